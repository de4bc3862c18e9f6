"""The bisect's state file, ``<results>/bisect-<id>/state.json``: what makes it resumable.

It holds the request (case, platform, ends, options), the candidate list as it was resolved
when the bisect started (a registry that gains a tag meanwhile does not shift the indices), and
every finished run. Written atomically after each run, so an interrupted bisect (Ctrl-C, a lost
agent) loses at most the run in progress, which the rerun repeats under the same step name.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.host.bisect.search import ConfirmAt, Outcome, Purpose, RunRecord, SearchConfig
from harness.results import write_atomic

STATE_FILE = "state.json"
STATE_VERSION = 1
# The fields that make two command lines "the same bisect" (the rerun continues it).
IDENTITY = ("case", "platform", "good", "bad", "confirmations", "confirm_at", "verify_ends",
            "source")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Model):
    ref: str  # image reference, as `harness run --image` takes it
    digest: str = ""  # the registry's manifest digest (sha256:...), when known
    created: str = ""  # the image config's creation time, when known
    labels: dict[str, str] = {}


class Step(_Model):
    number: int
    name: str  # directory and run id under the bisect directory
    candidate: int
    purpose: Purpose
    outcome: Outcome
    status: str  # the result's status ("passed", "failed", "error", ...) or "missing"
    failure_class: str | None = None
    reason: str = ""  # one line: why (the result's message, the infrastructure error)
    result: str = ""  # the result file, relative to the bisect directory
    fingerprint: dict[str, object] = {}  # vllm version, image digest: the range to read
    duration_s: float = 0.0
    finished_at: str = ""


class BisectState(_Model):
    version: Literal[1] = STATE_VERSION
    id: str
    case: str
    platform: str
    good: str
    bad: str
    confirmations: int
    confirm_at: ConfirmAt = "each"  # states written before the setting existed confirmed each
    verify_ends: bool
    source: str  # where the candidates came from: "file:PATH" or "registry:HOST/REPO"
    candidates: list[Candidate]
    steps: list[Step] = []
    started_at: str = ""

    def config(self) -> SearchConfig:
        return SearchConfig(len(self.candidates), self.confirmations, self.verify_ends,
                            self.confirm_at)

    def runs(self) -> list[RunRecord]:
        return [RunRecord(s.candidate, s.outcome, s.purpose) for s in self.steps]

    def identity(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in IDENTITY}


class StateError(Exception):
    """A state file that cannot be used; names the file and why."""


def bisect_id(case: str, platform: str, good: str, bad: str) -> str:
    """Stable for the same request, so rerunning the same command finds its state."""
    digest = hashlib.sha256(json.dumps([case, platform, good, bad]).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{case}-{platform}")[:60].strip("-.")
    return f"{slug}-{digest}"


def state_path(bisect_dir: Path) -> Path:
    return bisect_dir / STATE_FILE


def load_state(bisect_dir: Path) -> BisectState | None:
    path = state_path(bisect_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: unreadable: {exc.strerror or exc}") from None
    try:
        return BisectState.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise StateError(f"{path}: {where}: {first['msg']}") from None


def save_state(bisect_dir: Path, state: BisectState) -> None:
    write_atomic(state_path(bisect_dir), state.model_dump_json(indent=2) + "\n")


def check_same_request(saved: BisectState, wanted: BisectState, path: Path) -> None:
    """A rerun must be the same bisect; anything else would mix two searches in one file."""
    saved_id, wanted_id = saved.identity(), wanted.identity()
    changed = [name for name in IDENTITY if saved_id[name] != wanted_id[name]]
    if changed:
        name = changed[0]
        raise StateError(f"{path}: this bisect was started with {name}={saved_id[name]!r}, now "
                         f"{wanted_id[name]!r}; rerun it unchanged to continue, or start "
                         "another with --id")
