"""Files the host makes for a container go to the results directory's owner.

The container runs as that owner (``--user uid:gid``); what the host creates beside it (run and
platform directories, compile caches, the container log) is handed over too, so a user never
meets root-owned files in their results. Changing owners needs root: otherwise nothing changes.
"""

from __future__ import annotations

import os
from pathlib import Path


def owner_of(path: Path) -> tuple[int, int]:
    """uid:gid of the nearest existing directory at or above ``path``."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    info = path.stat()
    return info.st_uid, info.st_gid


def make_dirs(path: Path, owner: tuple[int, int]) -> None:
    """mkdir -p, giving the directories it creates to ``owner`` (when we may: as root)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        chown(created, owner)


def hand_over(directory: Path, owner: tuple[int, int]) -> None:
    """Give what the host wrote beside the container's files (logs, placeholders) to the
    results' owner, so the user never meets root-owned files."""
    if os.geteuid() != 0 or owner == (0, 0) or not directory.exists():
        return
    for path in [directory, *directory.rglob("*")]:
        chown(path, owner)


def chown(path: Path, owner: tuple[int, int]) -> None:
    if os.geteuid() == 0 and owner != (0, 0):
        try:
            os.lchown(path, *owner)
        except OSError:
            pass
