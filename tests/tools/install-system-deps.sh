#!/usr/bin/env bash
# Debian packages the test suite talks to: dig (an independent client) and NSD (a real
# upstream). Installs only what is missing; needs root (CI and the dev machines are root).
set -euo pipefail
missing=()
command -v dig >/dev/null || missing+=(bind9-dnsutils)
command -v nsd >/dev/null || [ -x /usr/sbin/nsd ] || missing+=(nsd)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root: apt-get install -y ${missing[*]})" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# NSD's package starts a system instance on port 53; tests run their own.
systemctl disable --now nsd >/dev/null 2>&1 || true
