"""System packages the tests and the container lane need, and the one place that installs them.

`make test` runs this file with the system Python (stdlib only) before anything else: as root
it apt-installs what is missing; otherwise it stops and prints the one apt command to run.
Tests ask ``missing_packages`` and fail (never skip) when something is absent.

What it runs, when all are missing (a fresh Debian 12 machine):

    apt-get install -y -q --no-install-recommends podman runc catatonit mmdebstrap docker.io docker-registry postgresql chromium tmux

Each package is probed by a file it installs, not by its name, so a package that is installed
but incomplete is still caught.  ``catatonit`` is a Recommends of podman that
``--no-install-recommends`` leaves out, and without it every ``podman run --init`` fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

# Debian package -> a path (glob) or a command on PATH that proves it is installed.
PACKAGES: dict[str, str] = {
    "podman": "podman",
    "runc": "runc",
    "catatonit": "/usr/libexec/podman/catatonit",
    "mmdebstrap": "mmdebstrap",
    "docker.io": "/usr/sbin/dockerd",  # and /usr/bin/docker: the 20.10 client that builds with BuildKit
    "docker-registry": "docker-registry",
    "postgresql": "/usr/lib/postgresql/*/bin/initdb",
    "chromium": "chromium",
    "tmux": "tmux",
}
APT_FLAGS = ["-y", "-q", "--no-install-recommends"]


def installed(package: str) -> bool:
    probe = PACKAGES[package]
    if probe.startswith("/"):
        return bool(glob.glob(probe))
    return shutil.which(probe) is not None


def missing_packages(packages=None) -> list[str]:
    return [p for p in (packages or PACKAGES) if not installed(p)]


def apt_command(packages: list[str]) -> str:
    return " ".join(["apt-get", "install", *APT_FLAGS, *packages])


def ensure(packages=None) -> int:
    missing = missing_packages(packages)
    if not missing:
        return 0
    if os.geteuid() != 0:
        print(f"system packages missing: {' '.join(missing)}\n"
              f"run as root: apt-get update && {apt_command(missing)}", file=sys.stderr)
        return 2
    print(f"installing system packages: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", *APT_FLAGS, *missing]):
        done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, timeout=1800)
        if done.returncode != 0:
            print(f"{' '.join(argv)} exited {done.returncode}", file=sys.stderr)
            return done.returncode
    still = missing_packages(missing)
    if still:
        print(f"installed but still missing: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(ensure(sys.argv[1:] or None))
