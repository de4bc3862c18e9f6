"""The benchmarks' baseline: code taken from a pinned earlier commit, not a copy kept in the tree.

``checkout()`` makes a git worktree of ``COMMIT`` in a temporary directory (removed on exit);
``load(tree, names)`` imports modules from that tree into this process under their own names,
each importing the others of ``names`` from the tree and everything else from today's
``harness``; ``function`` takes one function alone. The old code runs on the same data, in the
same process (or the same subprocess), as today's.
"""

from __future__ import annotations

import __future__
import ast
import importlib.util
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
# The harness before issue 14: the v1 history store, page and dashboard, and the reader that
# parsed with json.loads and then validated with pydantic.
COMMIT = "b00817f5394b8b23417486c3461078f6d7159b5c"
GIT_TIMEOUT_S = 120


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_S)


def require(commit: str = COMMIT) -> None:
    """Exits with one line naming the commit when this clone lacks it (a shallow clone)."""
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        sys.exit(f"error: baseline commit {commit} is not in this clone ({REPO}); fetch it "
                 "(git fetch --unshallow, or a deeper clone) to run this benchmark")


@contextmanager
def checkout(commit: str = COMMIT) -> Iterator[Path]:
    """A worktree of ``commit`` in a temporary directory, removed on exit."""
    require(commit)
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        added = _git("worktree", "add", "--detach", str(tree), commit)
        if added.returncode != 0:
            sys.exit(f"error: git worktree add {commit}: {added.stderr.strip()}")
        try:
            yield tree
        finally:
            _git("worktree", "remove", "--force", str(tree))


def load(tree: Path, names: list[str]) -> dict[str, ModuleType]:
    """Modules ``names`` (dotted, in import order) as the tree has them; sys.modules is left
    as it was, so today's modules of the same names stay what ``import`` finds."""
    saved = {name: sys.modules.get(name) for name in names}
    loaded: dict[str, ModuleType] = {}
    try:
        for name in names:
            spec = importlib.util.spec_from_file_location(
                name, tree / (name.replace(".", "/") + ".py"))
            assert spec is not None and spec.loader is not None, name
            module = sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return loaded


def function(tree: Path, path: str, name: str, today: ModuleType) -> FunctionType:
    """The tree's top-level function ``name`` in ``path``, alone, run against ``today``'s
    globals (today's models and errors; the rest of the old module is not imported)."""
    file = tree / path
    found = [node for node in ast.parse(file.read_text(encoding="utf-8")).body
             if isinstance(node, ast.FunctionDef) and node.name == name]
    if len(found) != 1:
        sys.exit(f"error: {file}: no one function {name} at commit {COMMIT}")
    namespace = dict(vars(today))
    exec(compile(ast.Module(found, type_ignores=[]), str(file), "exec",
                 flags=__future__.annotations.compiler_flag, dont_inherit=True), namespace)
    return namespace[name]
