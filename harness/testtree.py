"""vLLM's own tests/ tree, per vLLM version or commit: fetched once, cached, read-only.

A vllm_tests job runs the tests of the vLLM that runs (harness.worker.vllm_tests), so the tree
is looked up by that vLLM's version inside the platform: ``git-<commit>`` when the version names
a commit (``0.11.1rc2.dev123+g1a2b3c4d``), else ``sdist-<version>`` (``0.32.0``; a local label
such as ``+cpu`` is dropped). ``harness tests fetch`` fills the cache before any job, outside
every deadline:

* ``--version 0.32.0``: vLLM's source distribution from the package index (PEP 691 JSON, or the
  PEP 503 page), checked against the index's sha256, ``tests/`` and ``pyproject.toml`` (pytest's
  markers) unpacked. Not ``vllm/``: at the tree's root it would shadow the installed vLLM.
* ``--checkout DIR [--commit SHA]``: ``git archive`` of a vLLM checkout at that commit.

Each tree is unpacked beside the cache, made read-only and renamed into place, so a tree is
whole or absent; ``TREE.json`` says where it came from. Containers get the cache root
read-only; a missing tree fails the job in a second, naming the command that fetches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

CACHE_ENV = "HARNESS_VLLM_TESTS"
INDEX = "https://pypi.org/simple"
META = "TREE.json"
KEEP = ("tests/", "pyproject.toml")  # what of vLLM's source a tree holds
FETCH_TIMEOUT_S = 600
JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"


class TreeMissing(Exception):
    """No tree for this vLLM in the cache; the message names the command that fetches it."""


class FetchError(Exception):
    pass


def cache_root(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV]).expanduser()
    home = Path(environ.get("HOME") or Path.home())
    return home / ".cache/vllm-harness/vllm-tests"


def commit_of(version: str) -> str | None:
    match = re.search(r"\+g([0-9a-f]{7,40})", version)
    return match.group(1) if match else None


def release_of(version: str) -> str:
    return version.split("+", 1)[0]


def tree_names(version: str) -> tuple[str, str]:
    """(the cache entry a vLLM of ``version`` runs the tests of, how to fetch it)."""
    commit = commit_of(version)
    if commit:
        return (f"git-{commit}", f"harness tests fetch --checkout <vLLM checkout> --commit {commit}")
    release = release_of(version)
    return (f"sdist-{release}", f"harness tests fetch --version {release}")


def resolve_tree(root: Path | None, version: str | None) -> Path:
    """The tree for a vLLM of ``version`` under ``root``; TreeMissing says what to fetch."""
    if not version:
        raise TreeMissing("no vLLM installed on this platform: its tests cannot be chosen")
    name, fetch = tree_names(version)
    if root is not None and root.is_dir():
        if name.startswith("git-"):  # a short commit in the version: match the full one
            found = sorted(p for p in root.glob(f"{name}*") if (p / META).is_file())
            if found:
                return found[0]
        elif (root / name / META).is_file():
            return root / name
    where = f"in {root}" if root is not None else "(no tests cache given to the worker)"
    raise TreeMissing(f"vLLM {version}: its tests tree ({name}) is not fetched {where}; "
                      f"fetch it first, outside the job: {fetch}")


def tree_info(tree: Path) -> dict:
    try:
        return json.loads((tree / META).read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- fetching

Getter = Callable[..., object]  # requests.get's signature


def sdist_link(version: str, index: str = INDEX, get: Getter | None = None) -> tuple[str, str]:
    """(url, sha256) of ``vllm-<version>.tar.gz`` on the index's page for vllm."""
    if get is None:
        import requests

        get = requests.get
    filename = f"vllm-{version}.tar.gz"
    page = f"{index.rstrip('/')}/vllm/"
    response = get(page, headers={"Accept": f"{JSON_SIMPLE}, text/html;q=0.1"}, timeout=60)
    if response.status_code != 200:
        raise FetchError(f"{page}: HTTP {response.status_code}")
    if JSON_SIMPLE in response.headers.get("Content-Type", ""):
        for entry in response.json().get("files", []):
            if entry.get("filename") == filename:
                return entry["url"], entry.get("hashes", {}).get("sha256", "")
    else:
        for href in re.findall(r'href="([^"]+)"', response.text):
            url, _, fragment = href.partition("#")
            if url.rsplit("/", 1)[-1] == filename:
                return url, fragment.removeprefix("sha256=") if fragment.startswith("sha256=") \
                    else ""
    raise FetchError(f"{page}: no {filename} (is {version} a released vLLM version?)")


def _download(url: str, target: Path, sha256: str, get: Getter) -> None:
    digest = hashlib.sha256()
    with get(url, stream=True, timeout=FETCH_TIMEOUT_S) as response:
        if response.status_code != 200:
            raise FetchError(f"{url}: HTTP {response.status_code}")
        with open(target, "wb") as out:
            for chunk in response.iter_content(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    if not sha256:
        raise FetchError(f"{url}: the index gave no sha256 to check it against")
    if digest.hexdigest() != sha256:
        raise FetchError(f"{url}: sha256 {digest.hexdigest()} is not the index's {sha256}")


def _unpack(archive: Path, into: Path, prefix: str) -> int:
    """Unpack KEEP from ``archive`` (members under ``prefix``) into ``into``; files written."""
    count = 0
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            name = member.name.removeprefix(prefix)
            if name == member.name and prefix or not name.startswith(KEEP):
                continue
            member.name = name
            members.append(member)
            count += member.isfile()
        tar.extractall(into, members=members, filter="data")  # no links out, no devices
    return count


def _install(staged: Path, final: Path, meta: dict) -> Path:
    (staged / META).write_text(json.dumps(meta, indent=2) + "\n")
    for path in [*staged.rglob("*")]:  # read-only: a run cannot change the tests it diffs
        path.chmod(0o555 if path.is_dir() else 0o444)
    staged.chmod(0o555)
    try:
        staged.rename(final)
    except OSError:  # another fetch won the race: theirs is as good
        if not (final / META).is_file():
            raise
        _remove(staged)
    return final


def _remove(path: Path) -> None:
    for sub in [path, *path.rglob("*")]:
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def fetch_sdist(version: str, root: Path, index: str = INDEX, get: Getter | None = None) -> Path:
    """The tree of vLLM ``version`` from its source distribution; present: not fetched again."""
    final = root / f"sdist-{release_of(version)}"
    if (final / META).is_file():
        return final
    if get is None:
        import requests

        get = requests.get
    url, sha256 = sdist_link(release_of(version), index, get)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]
        _download(url, archive, sha256, get)
        staged = Path(tempfile.mkdtemp(dir=root, prefix=".tree-"))
        try:
            files = _unpack(archive, staged, f"vllm-{release_of(version)}/")
            if not (staged / "tests").is_dir():
                raise FetchError(f"{url}: the archive holds no tests/ directory")
            return _install(staged, final, {"source": "sdist", "version": release_of(version),
                                            "url": url, "sha256": sha256, "files": files})
        except BaseException:
            _remove(staged)
            raise


def fetch_checkout(checkout: Path, commit: str | None, root: Path) -> Path:
    """The tree of a vLLM checkout at ``commit`` (default HEAD), by ``git archive``."""
    def git(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True,
                              timeout=FETCH_TIMEOUT_S, **kwargs)

    resolved = git("rev-parse", "--verify", f"{commit or 'HEAD'}^{{commit}}", text=True)
    if resolved.returncode != 0:
        raise FetchError(f"{checkout}: no commit {commit or 'HEAD'}: {resolved.stderr.strip()}")
    full = resolved.stdout.strip()
    final = root / f"git-{full}"
    if (final / META).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        archive = Path(tmp) / "tree.tar"
        done = git("archive", "--format=tar", "-o", str(archive), full, "tests", "pyproject.toml")
        if done.returncode != 0:
            raise FetchError(f"{checkout}: git archive failed: {done.stderr.decode().strip()}")
        staged = Path(tempfile.mkdtemp(dir=root, prefix=".tree-"))
        try:
            files = _unpack(archive, staged, "")
            return _install(staged, final, {"source": "git", "commit": full,
                                            "checkout": str(checkout), "files": files})
        except BaseException:
            _remove(staged)
            raise
