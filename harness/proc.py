"""Child processes with deadlines: each in its own process group, logged to a file, always reaped.

Every engine, probe and container client goes through here, so "no process survives the run"
is enforced in one place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

_live: set[subprocess.Popen] = set()


@dataclass
class Finished:
    returncode: int | None  # None: killed at the deadline
    timed_out: bool
    duration_s: float


def start(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``argv`` in a new session (its own process group), stdout+stderr appended to a log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)
    finally:
        log.close()  # the child holds its own copy
    _live.add(proc)
    return proc


def stop(proc: subprocess.Popen, grace_s: float = 20.0) -> int | None:
    """SIGTERM the whole group, then SIGKILL after ``grace_s``. Returns the exit code."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # The leader may be gone while its children live on: always sweep the group.
    _signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
        pass
    _live.discard(proc)
    return proc.returncode


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(argv: Sequence[str], log_path: Path, timeout_s: float, env: dict[str, str] | None = None,
        cwd: Path | None = None, grace_s: float = 20.0) -> Finished:
    """Run to completion or deadline; on deadline or Ctrl-C the group is stopped first."""
    began = time.monotonic()
    proc = start(argv, log_path, env=env, cwd=cwd)
    try:
        returncode = proc.wait(timeout=timeout_s)
        stop(proc, grace_s=1.0)  # reap stragglers left in the group
        return Finished(returncode, False, time.monotonic() - began)
    except subprocess.TimeoutExpired:
        stop(proc, grace_s=grace_s)
        return Finished(None, True, time.monotonic() - began)
    except BaseException:
        stop(proc, grace_s=grace_s)
        raise


def stop_all() -> None:
    """Last-resort cleanup (atexit, signal handlers)."""
    for proc in list(_live):
        stop(proc, grace_s=5.0)


def read_tail(path: Path, max_bytes: int = 64_000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
