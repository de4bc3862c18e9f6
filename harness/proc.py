"""Child processes with deadlines: each in its own process group, always reaped.

The one process-group manager: the worker (pytest, or the container client that runs it), the
engines, the probes and the container engine's own calls all start and stop here, with one
escalation: SIGINT (pytest and vLLM turn it into an orderly shutdown that writes results),
then SIGTERM, then SIGKILL, and the group is always swept with SIGKILL at the end because the
leader may be gone while its children live on. "No process survives the run" is enforced here.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

# (signal, seconds to wait after it); the first wait is the caller's grace period.
ESCALATION = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
TERM_GRACE_S = 10.0
KILL_WAIT_S = 10.0
DEFAULT_GRACE_S = 20.0

_live: set[subprocess.Popen] = set()


@dataclass
class Finished:
    returncode: int | None  # None: stopped at the deadline
    timed_out: bool
    duration_s: float


def spawn(argv: Sequence[str], stdout: int | IO = subprocess.DEVNULL,
          env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``argv`` in a new session (its own process group), stderr merged into stdout."""
    child = subprocess.Popen(list(argv), stdout=stdout, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    _live.add(child)
    return child


def start(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``argv`` with stdout+stderr appended to a log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child holds its own copy
        return spawn(argv, stdout=log, env=env, cwd=cwd)


def stop(child: subprocess.Popen, grace_s: float = DEFAULT_GRACE_S) -> int | None:
    """Stop the whole group with the escalation above. Returns the leader's exit code."""
    waits = (grace_s, TERM_GRACE_S, KILL_WAIT_S)
    for sig, wait in zip(ESCALATION, waits):
        if child.poll() is not None:
            break
        signal_group(child.pid, sig)
        try:
            child.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    signal_group(child.pid, signal.SIGKILL)  # stragglers that left the leader behind
    try:
        child.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
        pass
    _live.discard(child)
    return child.returncode


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(argv: Sequence[str], log_path: Path, timeout_s: float, env: dict[str, str] | None = None,
        cwd: Path | None = None, grace_s: float = DEFAULT_GRACE_S) -> Finished:
    """Run to completion or deadline; on deadline or Ctrl-C the group is stopped first."""
    began = time.monotonic()
    child = start(argv, log_path, env=env, cwd=cwd)
    return wait(child, timeout_s, grace_s, began)


def wait(child: subprocess.Popen, timeout_s: float, grace_s: float, began: float) -> Finished:
    try:
        returncode = child.wait(timeout=timeout_s)
        stop(child, grace_s=1.0)  # reap stragglers left in the group
        return Finished(returncode, False, time.monotonic() - began)
    except subprocess.TimeoutExpired:
        stop(child, grace_s=grace_s)
        return Finished(None, True, time.monotonic() - began)
    except BaseException:
        stop(child, grace_s=grace_s)
        raise


@dataclass
class Captured:
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str


def call(argv: Sequence[str], timeout_s: float, grace_s: float = 2.0,
         env: dict[str, str] | None = None) -> Captured | None:
    """A short command whose output we read (``docker inspect``): own group, deadline, output
    captured. None when it cannot start."""
    try:
        child = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    except OSError:
        return None
    _live.add(child)
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(child, grace_s=grace_s)
        out, err = child.communicate()
        return Captured(None, _text(out), _text(err))
    except BaseException:
        stop(child, grace_s=grace_s)
        raise
    stop(child, grace_s=grace_s)
    return Captured(child.returncode, _text(out), _text(err))


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def raise_interrupt(signum, frame):
    """Signal handler: unwind like Ctrl-C (SIGTERM from a Buildkite cancel or `docker stop`)."""
    raise KeyboardInterrupt(f"signal {signum}")


def stop_all() -> None:
    """Last-resort cleanup (atexit, signal handlers)."""
    for child in list(_live):
        stop(child, grace_s=5.0)


def read_tail(path: Path, max_bytes: int = 64_000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def log_size(path: Path) -> int:
    """Where a log ends now: a later reader starts here to see only what came after."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_from(path: Path, offset: int, max_bytes: int = 4_000_000) -> str:
    """The log from ``offset`` on (the last ``max_bytes`` of it at most)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(offset, size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def shell_join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def flag_words(*pairs: tuple[str, object]) -> list[str]:
    """Command-line words of (flag, value) pairs that are set: ``[flag, value]`` (numbers and
    paths as text, other words such as shell-variable words kept as they are); True gives the
    flag alone; None, False and empty values give nothing. How the harness writes the command
    lines it prints or uploads (bisect, pipeline, auto-bisect steps)."""
    out: list = []
    for flag, value in pairs:
        if value is True:
            out.append(flag)
        elif value is not None and value is not False and value != "":
            out += [flag, str(value) if isinstance(value, (int, float, Path)) else value]
    return out


# ---------------------------------------------------------------- memory of a process tree


def group_rss_kb(pgid: int, proc_root: Path = Path("/proc")) -> int:
    """Resident memory of every live process in the group, summed (KiB)."""
    total = 0
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # Fields after the command (which may hold spaces) start after the last ')'.
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:  # field 5 of stat: pgrp
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except (OSError, ValueError, IndexError):
            continue
    return total


class MemoryWatch:
    """Samples a process group's summed RSS; ``peak_mb`` since the last ``reset``.

    Per job: a reused engine's peak restarts with each job, so a result carries its own job's
    peak, not the maximum of every process the worker ever reaped.
    """

    def __init__(self, pgid: int, interval_s: float = 0.5):
        self.pgid, self.interval_s = pgid, interval_s
        self._peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        self._peak_kb = max(self._peak_kb, group_rss_kb(self.pgid))

    def reset(self) -> None:
        self._peak_kb = 0
        self.sample()

    @property
    def peak_mb(self) -> float | None:
        return self._peak_kb / 1024 if self._peak_kb else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
