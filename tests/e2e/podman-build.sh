#!/usr/bin/env bash
# Builds the aiwall image with podman on a machine without registry access: a local
# Debian base (podman-local-base.sh), the host's CA bundle for pip, host networking.
# Usage: tests/e2e/podman-build.sh [TAG]   (default localhost/aiwall:e2e)
set -euo pipefail
tag="${1:-localhost/aiwall:e2e}"
base="${AIWALL_BASE_IMAGE:-localhost/debian:bookworm-slim}"
ca="${AIWALL_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/e2e/podman-env.sh
. "$here/podman-env.sh"
"$here/podman-local-base.sh" "$base"
args=(--pull=never --format docker --network host
      --file "$root/deploy/Dockerfile" --ignorefile "$root/deploy/Dockerfile.dockerignore"
      --build-arg "BASE_IMAGE=$base" --tag "$tag")
if [ -r "$ca" ]; then
  # pip inside the build reaches PyPI only through the host's CA bundle (TLS proxy).
  args+=(--volume "$ca:/usr/local/share/aiwall-build-ca.pem:ro"
         --build-arg PIP_CERT=/usr/local/share/aiwall-build-ca.pem)
fi
podman build "${args[@]}" "$root"
podman image inspect --format '{{.Size}}' "$tag"
