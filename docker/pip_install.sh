#!/bin/sh
# pip install "$@" with the optional build inputs (docker/build-inputs, bind-mounted at
# /build-inputs): a CA bundle to trust and a folder of extra wheels. Used by every Dockerfile.
set -eu
inputs=/build-inputs
if [ -s "$inputs/ca.crt" ]; then
  export PIP_CERT="$inputs/ca.crt"
fi
set -- --no-cache-dir --disable-pip-version-check "$@"
if [ -d "$inputs/wheels" ]; then
  set -- --find-links "$inputs/wheels" "$@"
fi
# The images are single-purpose: installing into their own Python is the point (PEP 668 marker
# on Ubuntu's system Python would refuse it).
PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore exec python3 -m pip install "$@"
