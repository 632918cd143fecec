#!/usr/bin/env bash
# Debian packages the test suite talks to: dig (an independent client), NSD (a real
# upstream), and dnsmasq, Unbound and BIND's checkers (which load our exports).
# Installs only what is missing; needs root (CI and the dev machines are root).
set -euo pipefail
missing=()
command -v dig >/dev/null || missing+=(bind9-dnsutils)
command -v nsd >/dev/null || [ -x /usr/sbin/nsd ] || missing+=(nsd)
# The programs the exports are loaded into, to prove they really load.
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
command -v unbound-checkconf >/dev/null || [ -x /usr/sbin/unbound-checkconf ] || missing+=(unbound)
command -v named-checkzone >/dev/null || [ -x /usr/bin/named-checkzone ] || missing+=(bind9-utils)
# promtool (alert rules and their unit tests) and Prometheus (the dashboard queries test).
command -v promtool >/dev/null || [ -x /usr/bin/promtool ] || missing+=(prometheus)
# valgrind counts instructions per query for the CI's cost guard (bench/instructions.py).
command -v valgrind >/dev/null || missing+=(valgrind)
# The resolvers that follow aiwall's live RPZ feed as secondaries (issue 15), and kdig.
command -v named >/dev/null || [ -x /usr/sbin/named ] || missing+=(bind9)
command -v pdns_recursor >/dev/null || [ -x /usr/sbin/pdns_recursor ] || missing+=(pdns-recursor)
command -v kresd >/dev/null || [ -x /usr/sbin/kresd ] || missing+=(knot-resolver)
# kresd's policy.rpz(..., watch) rereads a replaced RPZ file only with lua-cqueues.
dpkg -s lua-cqueues >/dev/null 2>&1 || missing+=(lua-cqueues)
command -v kdig >/dev/null || missing+=(knot-dnsutils)
# PostgreSQL, which the tests start themselves (initdb as an unprivileged user).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# systemd-analyze verifies deploy/systemd/aiwall.service.
command -v systemd-analyze >/dev/null || missing+=(systemd)
# strace refuses system calls as a sandbox would (its fault injection).
command -v strace >/dev/null || missing+=(strace)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root: apt-get install -y ${missing[*]})" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages may start system instances on port 53; tests run their own.
systemctl disable --now nsd unbound named pdns-recursor postgresql >/dev/null 2>&1 || true
# The prometheus package starts a system instance on :9090; the tests run their own.
systemctl disable --now prometheus >/dev/null 2>&1 || true
