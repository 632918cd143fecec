# Sourced by the e2e helpers: podman as it works on the CI and development machines.
# - crun rejects the hybrid cgroup setup there: use runc and cgroupfs;
# - the default RLIMIT_NOFILE raise is refused by the sandbox: default_ulimits = [].
# The containers.conf is private to these scripts (CONTAINERS_CONF), the system's is untouched.
_aiwall_conf_dir="${XDG_RUNTIME_DIR:-/tmp}/aiwall-e2e"
mkdir -p "$_aiwall_conf_dir"
printf '[containers]\ndefault_ulimits = []\n' >"$_aiwall_conf_dir/containers.conf"
export CONTAINERS_CONF="$_aiwall_conf_dir/containers.conf"
podman() { command podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs "$@"; }
