"""Start the worker (pytest + the harness plugin) and wait for it with a deadline.

The same worker command runs on this host (``local``) or inside a container; only the argv
prefix differs. Output goes to the terminal and to a log file at once; on the deadline, Ctrl-C
or SIGTERM the whole process group is stopped and a caller-supplied cleanup (``docker kill``)
runs, so nothing is left behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from harness import proc
from harness.secrets import redact

DISK_FULL_MARK = "no space left on device"


@dataclass
class WorkerOutcome:
    returncode: int | None
    timed_out: bool
    interrupted: bool
    duration_s: float
    log_path: Path
    start_error: str = ""  # the worker (or the container client) could not be started at all
    disk_full: str = ""  # the worker, or this log, hit "no space left on device"


def pytest_argv(python: str, *, platform: str, case_files: Sequence[str], results: str,
                run_id: str, keyword: str | None, junit: str, platforms_file: str | None = None,
                extra: Sequence[str] = ()) -> list[str]:
    """The worker command: pytest collecting the case files with the harness plugin, started as
    ``-m harness.worker`` so that an image without pytest gets the mounted one (worker_deps)."""
    argv = [python, "-m", "harness.worker", "-p", "harness.worker.plugin", "-p", "no:cacheprovider",
            "-o", "addopts=", "-o", "testpaths=", "-rA", "--tb=short",
            "--harness-platform", platform, "--harness-results", results,
            "--harness-run-id", run_id, f"--junitxml={junit}"]
    if platforms_file:
        argv += ["--harness-platforms-file", platforms_file]
    if keyword:
        argv += ["-k", keyword]
    return argv + list(extra) + list(case_files)


def run_worker(argv: Sequence[str], log_path: Path, timeout_s: float,
               env: dict[str, str] | None = None, cwd: Path | None = None,
               on_stop: Callable[[], None] | None = None, echo: bool = True,
               grace_s: float = 30.0) -> WorkerOutcome:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        child = proc.spawn(argv, stdout=subprocess.PIPE, env=env, cwd=cwd)
    except OSError as exc:  # e.g. docker not installed on this agent
        problem = f"{argv[0]}: {exc.strerror or exc}"
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"harness: cannot start the worker: {problem}\n")
        return WorkerOutcome(None, False, False, time.monotonic() - began, log_path, problem)
    seen: list[str] = []
    copier = threading.Thread(target=_copy_output, args=(child, log_path, echo, seen),
                              daemon=True)
    copier.start()
    timed_out = interrupted = False
    previous = signal.signal(signal.SIGTERM, proc.raise_interrupt) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # SIGINT first (proc.ESCALATION): the worker's pytest turns it into "interrupted"
        # results; the group is swept even when the leader already exited.
        proc.stop(child, grace_s)
        if on_stop is not None:
            on_stop()
        copier.join(timeout=10)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return WorkerOutcome(None if timed_out else child.returncode, timed_out, interrupted,
                         time.monotonic() - began, log_path, disk_full="; ".join(seen))


def _copy_output(child: subprocess.Popen, log_path: Path, echo: bool, disk_full: list[str]) -> None:
    """Copy the worker's output to the log and the terminal. A log that cannot be written
    (a full disk) must not stop the copying: the worker would block on a full pipe."""
    assert child.stdout is not None
    log = open(log_path, "a", encoding="utf-8")
    try:
        for raw in iter(child.stdout.readline, b""):
            line = redact(raw.decode("utf-8", errors="replace"))
            if DISK_FULL_MARK in line.lower() and len(disk_full) < 3:
                disk_full.append(line.strip()[:500])
            if log is not None:
                try:
                    log.write(line)
                    log.flush()
                except OSError as exc:
                    disk_full.append(f"writing {log_path}: {exc.strerror or exc}")
                    log = None
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
    finally:
        if log is not None:
            try:
                log.close()
            except OSError:
                pass
