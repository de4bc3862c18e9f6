#!/usr/bin/env bash
# Build a harness image from the repository root, with the optional build inputs that
# restricted networks need, and leave nothing behind.
#
#   docker/build-image.sh [--engine docker|podman] [--ca-bundle FILE] [--wheels DIR]
#                         -f docker/Dockerfile.<x> -t TAG [other `build` options...]
#
# --ca-bundle FILE  a CA bundle pip must trust (TLS-intercepting proxies)
# --wheels DIR      extra wheels for pip --find-links (e.g. torch+cpu without PyTorch's index)
# Both are copied into docker/build-inputs for this build only (bind-mounted by RUN steps,
# never in a layer) and removed afterwards. Every other option goes to `<engine> build`, e.g.
# podman on hosts where crun fails: --runtime runc --network=host
#   --ulimit nofile=20000:20000 --ulimit nproc=8192:8192
set -euo pipefail
cd "$(dirname "$0")/.."
engine=docker ca= wheels= rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --ca-bundle) ca=$2; shift 2 ;;
    --wheels) wheels=$2; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
inputs=docker/build-inputs
cleanup() { find "$inputs" -mindepth 1 ! -name .gitignore ! -name README.md -exec rm -rf {} +; }
trap cleanup EXIT
cleanup
if [ -n "$ca" ]; then cp "$ca" "$inputs/ca.crt"; fi
if [ -n "$wheels" ]; then mkdir "$inputs/wheels" && cp "$wheels"/*.whl "$inputs/wheels/"; fi
"$engine" build "${rest[@]}" .
