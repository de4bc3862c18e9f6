#!/usr/bin/env bash
# Make a local Debian base image without any registry: mmdebstrap a minimal root filesystem
# and import it. For machines that cannot pull images (this project's CI) but reach Debian's
# archive. ~30-60 s, ~250 MB with the default packages.
#
#   docker/build-base.sh [--engine podman|docker] [--suite bookworm] [--include PKGS] TAG
#
# Default packages: what docker/Dockerfile.cpu needs from its base (python3 with venv, CA
# certificates, libgomp1, libnuma1, g++ and Python.h). The tarball is removed whatever happens.
set -euo pipefail
engine=podman suite=bookworm
include=python3,python3-venv,python3-dev,ca-certificates,libgomp1,libnuma1,g++
while [ $# -gt 1 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --include) include=$2; shift 2 ;;
    *) echo "build-base.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -eq 1 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
tag=$1
command -v mmdebstrap >/dev/null || { echo "build-base.sh: mmdebstrap is not installed" >&2; exit 3; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/harness-base.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --quiet --variant=minbase --include="$include" "$suite" "$tmp/rootfs.tar"
"$engine" import --change 'CMD ["/bin/bash"]' "$tmp/rootfs.tar" "$tag" >/dev/null
echo "build-base.sh: $tag ($suite minbase + $include)"
