#!/usr/bin/env bash
# Builds a Debian bookworm "slim" base image locally, for machines that reach Debian's
# mirror but no container registry (the CI and development machines, see test-bed notes).
# Usage: tests/e2e/podman-local-base.sh [IMAGE]   (default localhost/debian:bookworm-slim)
# Idempotent: does nothing when the image exists. Needs root, debootstrap and podman.
set -euo pipefail
image="${1:-localhost/debian:bookworm-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/e2e/podman-env.sh
. "$here/podman-env.sh"

if podman image exists "$image"; then
  echo "$image: already present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap missing: apt-get install -y debootstrap" >&2; exit 1; }
rootfs="$(mktemp -d /var/tmp/aiwall-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
# The same trimming the official debian:*-slim images get (debuerreotype "slimify"):
# no documentation, man pages or translations, now or in packages installed later.
mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
cat >"$rootfs/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
# As the official image: no apt caches, no doc files that debootstrap itself unpacked.
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CFG
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/man" "$rootfs/usr/share/info" "$rootfs/usr/share/locale" \
  -mindepth 1 -not -name locale.alias -delete 2>/dev/null || true
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
tar -C "$rootfs" --numeric-owner -c . | podman import --change 'CMD ["bash"]' - "$image" >/dev/null
echo "$image: built"
