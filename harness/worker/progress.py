"""Live progress of a job on the terminal, and the job's phase timings.

The worker prints where each job is: model, engine starting (with the elapsed time and the
engine's last log line), ready, requests, probes, checks, verdict. How much it prints is the
orchestrator's choice (it knows whether a person is watching; the worker's stdout is a pipe):

- ``tty``: a heartbeat every few seconds while a phase waits on the engine;
- ``ci``: a line per phase and a heartbeat at most every 30 s, for CI logs;
- ``buildkite``: like ``ci``, each job in its own log group (``--- `` header) and a failed job's
  group expanded (``^^^ +++``), so the failure is on screen when the log opens;
- ``off``: nothing (phases are still timed).

``stream_log`` also copies the engine's own log lines as they are written.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

MODES = ("tty", "ci", "buildkite", "off")
HEARTBEAT_S = {"tty": 5.0, "ci": 30.0, "buildkite": 30.0, "off": 0.0}
STREAM_POLL_S = 0.5
LAST_LINE_CHARS = 160
# The phases a result records (results.Timings fields), in the order a job goes through them.
PHASES = ("model", "engine_start", "requests", "probes", "checks", "shutdown")
FAILED_STATUSES = ("failed", "error", "xpassed")
FAILED_TAIL_LINES = 15


def last_line(path: Path, max_bytes: int = 8192) -> str:
    """The engine log's last non-empty line, shortened: what the engine is doing right now."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    text = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return text if len(text) <= LAST_LINE_CHARS else text[:LAST_LINE_CHARS - 3] + "..."


class Progress:
    """One per worker; ``write`` prints one line (the plugin routes it past pytest's output)."""

    def __init__(self, mode: str = "off", write: Callable[[str], None] = print,
                 stream_log: bool = False, heartbeat_s: float | None = None,
                 redact: Callable[[str], str] = lambda text: text):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}; known: {', '.join(MODES)}")
        self.mode, self._write, self.stream_log = mode, write, stream_log
        self.heartbeat_s = HEARTBEAT_S[mode] if heartbeat_s is None else heartbeat_s
        self._redact = redact
        self._lock = threading.Lock()
        self.job = ""
        self.ready_announced = False  # by a waiting() ready callback, for the current job

    def say(self, text: str) -> None:
        if self.mode == "off" and not text.startswith("  | "):
            return
        with self._lock:
            self._write(self._redact(text))

    # ---------------------------------------------------------------- job boundaries

    def job_started(self, job_id: str, detail: str = "") -> None:
        self.job, self.ready_announced = job_id, False
        if self.mode == "buildkite":
            self.say(f"--- :vllm: {job_id}{f' ({detail})' if detail else ''}")
        else:
            self.say(f"[{job_id}] start{f' ({detail})' if detail else ''}")

    def job_finished(self, status: str, seconds: float, message: str = "",
                     log_tail: str = "") -> None:
        why = f": {message}" if message and status != "passed" else ""
        self.say(f"[{self.job}] verdict: {status} after {seconds:.0f} s{why}")
        if status not in FAILED_STATUSES:
            return
        if self.mode == "buildkite":
            self.say("^^^ +++")  # expand this job's group: the failure is what a reader wants
        if self.mode != "off" and log_tail:
            self.say(f"[{self.job}] engine log, last lines:")
            for line in log_tail.splitlines()[-FAILED_TAIL_LINES:]:
                self.say(f"  | {line}")

    def phase(self, text: str) -> None:
        self.say(f"[{self.job}] {text}")

    # ---------------------------------------------------------------- waiting on the engine

    @contextmanager
    def waiting(self, label: str, log_path: Path | None,
                ready: Callable[[], float | None] | None = None) -> Iterator[None]:
        """While the body runs: a heartbeat (elapsed, engine's last log line) every
        ``heartbeat_s``; ``ready()`` (seconds, once known) announces the engine ready; with
        ``stream_log`` the engine's new log lines are copied as they come."""
        stop = threading.Event()
        began = time.monotonic()
        # The log's size now, before the body writes to it: only later lines are streamed.
        offset = _size(log_path) if self.stream_log and log_path else 0
        watcher = threading.Thread(target=self._watch,
                                   args=(label, log_path, ready, began, offset, stop),
                                   daemon=True, name="harness-progress")
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(timeout=5)

    def _watch(self, label: str, log_path: Path | None, ready: Callable[[], float | None] | None,
               began: float, offset: int, stop: threading.Event) -> None:
        next_beat = began + self.heartbeat_s
        announced = False
        while not stop.wait(STREAM_POLL_S):
            if self.stream_log and log_path is not None:
                offset = self._copy_new_lines(log_path, offset)
            if ready is not None and not announced:
                seconds = ready()
                if seconds is not None:
                    announced, label = True, "requests"
                    self.ready_announced = True
                    self.phase(f"engine ready after {seconds:.0f} s; requests")
            if self.heartbeat_s and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.heartbeat_s
                line = last_line(log_path) if log_path is not None else ""
                self.phase(f"{label} ({time.monotonic() - began:.0f} s)"
                           + (f": {line}" if line and not self.stream_log else ""))
        if self.stream_log and log_path is not None:
            self._copy_new_lines(log_path, offset)

    def _copy_new_lines(self, log_path: Path, offset: int) -> int:
        try:
            with open(log_path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except OSError:
            return offset
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a half-written line waits for its end
        for line in complete.decode("utf-8", errors="replace").splitlines():
            self.say(f"  | {line}")
        return offset + len(complete)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class PhaseClock:
    """Wall time per phase of one job (seconds), for the result's timings."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.monotonic() - began
