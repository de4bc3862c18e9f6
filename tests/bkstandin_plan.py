"""STAND-IN for Buildkite's scheduler, the pure part: uploaded pipeline YAML in, what runs next
out. No I/O (tests/bkstandin_run.py runs the jobs). No agent binary or Buildkite API can be
had here; this plays them for the rehearsal of a night (tests/test_rehearsal.py).

What it understands is what the harness's generated pipelines use, with Buildkite's meaning:
steps run as soon as their ``depends_on`` are done (no implicit order: the harness writes no
``wait`` steps); a failed dependency blocks its dependants unless ``allow_failure: true``;
``soft_fail`` (true, or exit statuses) makes a failure not fail the build; ``retry.automatic``
(exit status or ``"*"``, each rule with its own ``limit``) reruns the job; ``if`` takes the
``build.source`` comparisons the bootstrap uses. Anything else in the YAML (another step
type or attribute, a plugin, an expression) is an ``UnderstoodError``, never skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

STEP_KEYS = {"label", "key", "commands", "command", "agents", "timeout_in_minutes", "retry",
             "soft_fail", "artifact_paths", "depends_on", "if"}
_IF_RE = re.compile(r'build\.source\s*(==|!=)\s*"([a-z_]+)"')


class UnderstoodError(ValueError):
    """The pipeline uses something this stand-in does not implement."""


@dataclass(frozen=True)
class Dependency:
    key: str
    allow_failure: bool = False


@dataclass(frozen=True)
class Retry:
    exit_status: int | None  # None: "*"
    limit: int


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    commands: tuple[str, ...]
    queue: str | None
    timeout_s: float | None
    retry: tuple[Retry, ...] = ()
    soft_fail: bool | tuple[int, ...] = False
    artifact_paths: tuple[str, ...] = ()
    depends_on: tuple[Dependency, ...] = ()


def _fail(where: str, what: str) -> UnderstoodError:
    return UnderstoodError(f"{where}: {what}")


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def parse_condition(text: str, source: str, where: str) -> bool:
    match = _IF_RE.fullmatch(text.strip())
    if not match:
        raise _fail(where, f"`if: {text}` is not understood (only build.source == / != \"...\")")
    return (source == match.group(2)) == (match.group(1) == "==")


def parse_step(raw: Mapping[str, Any], source: str, where: str) -> Step | None:
    """One step of an upload; None when its ``if`` says it is not in this build."""
    if not isinstance(raw, Mapping):
        raise _fail(where, f"a {type(raw).__name__} step (wait/block/trigger) is not understood")
    unknown = sorted(set(raw) - STEP_KEYS)
    if unknown:
        raise _fail(where, f"step attribute(s) {unknown} not understood")
    key = raw.get("key") or raw.get("label")
    where = f"{where} ({key})"
    if "if" in raw and not parse_condition(raw["if"], source, where):
        return None
    if not key:
        raise _fail(where, "a step without key or label")
    commands = tuple(str(c) for c in _as_list(raw.get("commands", raw.get("command", []))))
    if not commands:
        raise _fail(where, "a step without commands")
    agents = raw.get("agents") or {}
    if set(agents) - {"queue"}:
        raise _fail(where, f"agent targeting {sorted(agents)} not understood (only queue)")
    rules = []
    for rule in (raw.get("retry") or {}).get("automatic", []) or []:
        if set(rule) - {"exit_status", "limit"}:
            raise _fail(where, f"retry rule {rule} not understood")
        status = rule.get("exit_status", "*")
        rules.append(Retry(None if status == "*" else int(status), int(rule.get("limit", 2))))
    if set(raw.get("retry") or {}) - {"automatic"}:
        raise _fail(where, f"retry {sorted(raw['retry'])} not understood")
    soft = raw.get("soft_fail", False)
    if not isinstance(soft, bool):
        soft = tuple(int(item["exit_status"]) for item in soft)
    depends = tuple(Dependency(d) if isinstance(d, str)
                    else Dependency(d["step"], bool(d.get("allow_failure", False)))
                    for d in _as_list(raw.get("depends_on") or []))
    timeout = raw.get("timeout_in_minutes")
    return Step(str(key), str(raw.get("label", key)), commands, agents.get("queue"),
                None if timeout is None else float(timeout) * 60, tuple(rules), soft,
                tuple(_as_list(raw.get("artifact_paths") or [])), depends)


def parse_upload(document: Any, source: str, where: str = "upload") -> list[Step]:
    if not isinstance(document, Mapping) or set(document) - {"steps"}:
        raise _fail(where, f"top-level keys {sorted(document or {})} not understood (only steps)")
    steps = [parse_step(raw, source, f"{where} step {i}")
             for i, raw in enumerate(document["steps"])]
    return [s for s in steps if s is not None]


# ---------------------------------------------------------------- the build's state


@dataclass
class Job:
    """One finished attempt of a step."""

    step: str
    attempt: int  # BUILDKITE_RETRY_COUNT
    exit_status: int | None  # None: timed out (killed at the step's timeout)
    agent: str


@dataclass
class Build:
    steps: list[Step] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # passed|soft_failed|failed|broken

    def add(self, steps: list[Step]) -> None:
        known = {s.key for s in self.steps}
        for step in steps:
            if step.key in known:
                raise UnderstoodError(f"step key {step.key!r} uploaded twice")
            for dependency in step.depends_on:
                if dependency.key not in known and dependency.key not in {s.key for s in steps}:
                    raise UnderstoodError(f"step {step.key} depends on unknown {dependency.key!r}")
            known.add(step.key)
        self.steps.extend(steps)

    def step(self, key: str) -> Step:
        return next(s for s in self.steps if s.key == key)

    def attempts(self, key: str) -> list[Job]:
        return [j for j in self.jobs if j.step == key]

    @property
    def passed(self) -> bool:
        return all(o in ("passed", "soft_failed") for o in self.outcomes.values())


def next_step(build: Build) -> Step | None:
    """The first step (upload order) whose dependencies are done and allow it to run. Steps
    whose dependency failed without allow_failure are marked broken first (transitively)."""
    changed = True
    while changed:
        changed = False
        for step in build.steps:
            if step.key not in build.outcomes and any(
                    build.outcomes.get(d.key) in ("failed", "broken") and not d.allow_failure
                    for d in step.depends_on):
                build.outcomes[step.key] = "broken"
                changed = True
    for step in build.steps:
        if step.key not in build.outcomes and all(d.key in build.outcomes
                                                  for d in step.depends_on):
            return step
    return None


def retries_left(step: Step, jobs: list[Job], exit_status: int | None) -> bool:
    """Whether the last job (exit ``exit_status``) is retried: the first rule that matches
    the status decides, within its own limit (Buildkite counts retries per rule)."""
    if exit_status == 0 or exit_status is None:
        return False
    for index, rule in enumerate(step.retry):
        if rule.exit_status is None or rule.exit_status == exit_status:
            used = sum(1 for j in jobs[:-1] if _rule_for(step, j.exit_status) == index)
            return used < rule.limit
    return False


def _rule_for(step: Step, exit_status: int | None) -> int | None:
    for index, rule in enumerate(step.retry):
        if exit_status not in (0, None) and rule.exit_status in (None, exit_status):
            return index
    return None


def outcome(step: Step, exit_status: int | None) -> str:
    if exit_status == 0:
        return "passed"
    if step.soft_fail is True or (exit_status is not None and isinstance(step.soft_fail, tuple)
                                  and exit_status in step.soft_fail):
        return "soft_failed"
    return "failed"
