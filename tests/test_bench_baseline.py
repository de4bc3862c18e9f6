"""The benchmarks' baseline comes from a worktree of a pinned commit (benchmarks/pinned.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

BENCH = REPO / "benchmarks"


def _pinned(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"import pinned\n{code}"], cwd=BENCH,
                          capture_output=True, text=True, timeout=120)


def _reachable() -> bool:
    return _pinned("pinned.require()").returncode == 0


def test_a_commit_this_clone_lacks_fails_in_one_line_naming_it():
    done = _pinned("pinned.require('0123456789abcdef0123456789abcdef01234567')")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "baseline commit 0123456789abcdef0123456789abcdef01234567 is not in this clone" \
        in done.stderr


def _baseline_worktrees() -> set[str]:
    listed = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True,
                            text=True, timeout=60).stdout
    return {line for line in listed.splitlines() if "bench-baseline-" in line}


def test_bench_history_measures_the_pinned_commits_store_and_page_and_leaves_no_worktree():
    before = _baseline_worktrees()
    done = subprocess.run([sys.executable, str(BENCH / "bench_history.py"), "--cases", "12",
                           "--nights", "6", "--no-postgres", "--no-browser"],
                          capture_output=True, text=True, timeout=300)
    if not _reachable():  # a shallow clone: the one-line refusal, before any work
        assert done.returncode == 1 and "is not in this clone" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert "baseline: v1 store (SQLite)" in done.stdout
    assert "baseline: v1 page from the v1 store" in done.stdout
    assert _baseline_worktrees() <= before
