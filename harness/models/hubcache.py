"""Write a local model directory into a Hugging Face cache in the hub layout.

    <cache>/models--org--name/blobs/<sha256>
    <cache>/models--org--name/snapshots/<revision>/<file> -> ../../blobs/<sha256>
    <cache>/models--org--name/refs/<branch> = <revision>   (only when a branch is named)

This is what ``snapshot_download(revision=<commit>)`` leaves behind: for a pinned commit it
writes no ``refs/main`` (a branch ref is written only when a branch or tag was asked for), so
a caller that omits the revision finds nothing here, as on a real agent, so huggingface_hub, transformers and vLLM
resolve ``org/name`` at that revision from it with ``HF_HUB_OFFLINE=1``. The tests use it to
put the tiny models under the cases' real hub ids (the weights are the tiny recipe's, the
names are the hub's: a stand-in for the download, named as such by the caller). It also
seeds an air-gapped agent from a directory copied in by hand.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from harness.models.hub import repo_folder

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def add_snapshot(cache: Path, repo_id: str, revision: str, source: Path,
                 ref: str | None = None) -> Path:
    """Add ``source``'s files as ``repo_id``@``revision``; returns the snapshot directory.
    ``ref``: the branch this commit was fetched as (``main``), None for a pinned commit."""
    if not COMMIT_RE.match(revision):
        raise ValueError(f"revision must be a 40-hex commit, not {revision!r}")
    folder = repo_folder(cache, repo_id)
    blobs, snapshot = folder / "blobs", folder / "snapshots" / revision
    blobs.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source)
        blob = blobs / _sha256(file)
        if not blob.exists():
            tmp = blob.with_suffix(".incomplete")
            shutil.copyfile(file, tmp)
            tmp.chmod(0o644)
            os.replace(tmp, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / ref).write_text(revision)
    return snapshot
