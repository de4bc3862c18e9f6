"""The worker's own dependencies for images without them (harness/host/launch/worker_deps.py)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from harness.host.launch import worker_deps
from harness.host.launch.worker_deps import WorkerDepsError, closure, worker_deps_dir


def test_the_folder_holds_pytest_and_what_it_requires_once_per_set_of_versions(tmp_path):
    names = {d.metadata["Name"].lower() for d in closure()}
    assert {"pytest", "pluggy", "iniconfig", "packaging"} <= names
    folder = worker_deps_dir({"HOME": str(tmp_path)})
    assert folder.parent == tmp_path / ".cache/vllm-harness/worker-deps"
    assert (folder / "pytest/__init__.py").is_file() and (folder / "_pytest").is_dir()
    assert f"pytest=={metadata.version('pytest')}" in (folder / "PINS").read_text()
    assert not list(folder.rglob("__pycache__")) and not list(folder.rglob("*.so"))
    assert oct(folder.stat().st_mode & 0o777) == "0o755"
    assert worker_deps_dir({"HOME": str(tmp_path)}) == folder  # built once
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging left


def test_a_python_without_pytest_imports_it_from_the_folder_after_its_own(tmp_path):
    """`python -I -S` (no site-packages: an image without pytest) + the folder appended: pytest comes
    from the folder, and a module the interpreter already has is not shadowed by it."""
    folder = worker_deps_dir({"HOME": str(tmp_path)})
    probe = ("import sys; sys.path.append(sys.argv[1]); import pytest, json; "
             "print(pytest.__file__.startswith(sys.argv[1]), json.__file__.startswith(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(folder)], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_a_compiled_or_missing_dependency_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(worker_deps, "WORKER_DISTRIBUTIONS", ("no-such-distribution-here",))
    with pytest.raises(WorkerDepsError, match="not installed here"):
        closure(worker_deps.WORKER_DISTRIBUTIONS)
    [compiled] = closure(("pyyaml",)) if _has_compiled("pyyaml") else closure(("msgspec",))
    with pytest.raises(WorkerDepsError, match="not pure Python"):
        worker_deps._files(compiled)


def _has_compiled(name: str) -> bool:
    try:
        return any(str(f).endswith(".so") for f in metadata.distribution(name).files or [])
    except metadata.PackageNotFoundError:
        return False
