"""What a finished container's exit says happened: the engine client's own exit codes, an OOM
kill, a container that vanished. Pure: it reads the worker's outcome, ``inspect``'s State and
the client's log, and returns a failure class and message (harness.outcomes) or None.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from harness.host.launch.start_worker import WorkerOutcome
from harness.signatures.scan import log_class

SIGKILL_EXIT = 137
# The engine client's own exit codes (docker and podman agree): the daemon or engine failed
# (no such image, a device or flag refused), the command could not be invoked, not found.
ENGINE_ERROR, CANNOT_INVOKE, NOT_FOUND = 125, 126, 127


def being_removed(state: dict) -> bool:
    """Someone else's `rm -f` caught mid-way: the engine has killed the container (SIGKILL,
    exit 137) and is removing it, so ``inspect`` still answers, with this status."""
    return str(state.get("Status", "")).lower() in ("removing", "dead") or bool(state.get("Dead"))


def oom_killed(state: dict, exit_code: int | None, outcome: WorkerOutcome) -> bool:
    """Exit 137 is SIGKILL. The harness's own kill (deadline, Ctrl-C) explains it, and so does
    a removal under way; otherwise the memory cgroup's OOM killer is the likely sender: podman
    with runc on cgroup v1 reports OOMKilled=false for a real OOM kill (seen here), so the flag
    alone is not enough."""
    killed_by_us = outcome.timed_out or outcome.interrupted
    return bool(state.get("OOMKilled")) or (
        bool(state) and exit_code == SIGKILL_EXIT and not killed_by_us
        and not being_removed(state))


def classify_exit(outcome: WorkerOutcome, state: dict, *, engine: str, image: str | None,
                  container: str, python: str,
                  how_to_get: Callable[[], str]) -> tuple[str, str] | None:
    """What the engine's own exit codes, or a container gone missing, say happened."""
    code = outcome.returncode
    if outcome.start_error or outcome.timed_out or outcome.interrupted or code is None:
        return None
    said = (state.get("Error") or "") + " " + log_tail(outcome.log_path)
    # what the engine said, by the rulebook (signatures.yaml: container-no-such-image)
    if code == ENGINE_ERROR and log_class(said, scope="container") == "image-missing":
        return "image-missing", f"image {image} not found: {how_to_get()}"
    if code == ENGINE_ERROR:
        return "container-start", (f"{engine} could not start a container from "
                                   f"{image} (exit {code}): {last_line(said)}")
    if code == CANNOT_INVOKE:
        return "container-start", (f"the worker command cannot be invoked in {image} "
                                   f"(exit {code}): {last_line(said)}")
    if code == NOT_FOUND:
        return "command-not-found", (f"the worker command ({python} or "
                                     f"timeout) is not in {image} (exit {code})")
    if not state or being_removed(state):  # gone, or going, while the client ran
        return "container-lost", (f"container {container} vanished during the run "
                                  f"(client exit {code}); removed by someone else?")
    return None


def log_tail(path: Path, size: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""
