#!/bin/sh
# Install the harness (copied to /opt/harness-src) into the image's Python without changing
# anything the image already has: the harness must test the vLLM (and torch, transformers...)
# that ships. pip only adds what is missing (pytest, ...); frozen_base.py fails the build if
# any distribution that was there before changed version or disappeared.
set -eu
here=$(dirname "$0")
python3 "$here/frozen_base.py" snapshot /tmp/harness-base.json
"$here/pip_install.sh" /opt/harness-src
python3 "$here/frozen_base.py" verify /tmp/harness-base.json
python3 -c "import harness.worker.plugin, pytest; print('harness installed:', harness.__file__)"
# `docker run IMAGE harness run --in-place` needs the console script on PATH.
command -v harness >/dev/null || { echo "harness is not on PATH after install" >&2; exit 1; }
harness --help >/dev/null
rm -rf /opt/harness-src /tmp/harness-base.json
