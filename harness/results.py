"""The result file: the only thing that crosses from a platform back to the orchestrator.

``results/<run-id>/<platform>/<case-id>.json`` (+ ``<case-id>.log`` beside it). Written
atomically (temp file, fsync, rename), so a reader sees either nothing or a whole file.
Everything after this module reads files, never a live engine.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from harness.outcomes import CheckOutcome, FailureClass, NodeOutcome, Status

SCHEMA_VERSION = 1

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckResult(_Model):
    name: str
    kind: str
    outcome: CheckOutcome
    message: str = ""
    evidence: dict[str, Any] = {}
    decisive: bool = False  # what the case exists to prove (see spec: decisive)


# A pydantic dataclass, not a model: a result holds hundreds of these (positions x top-k per
# request), and building them is most of reading a file; a slotted dataclass validates the same
# (unknown keys refused) at a quarter of the cost (benchmarks/bench_compare.py).
@pydantic_dataclass(config=ConfigDict(extra="forbid"), slots=True)
class TopLogprob:
    token_id: int
    logprob: float
    token: str = ""


# One upstream test node of a vllm_tests case (harness.worker.vllm_tests); a slotted pydantic
# dataclass like TopLogprob: a night's results hold tens of thousands.
@pydantic_dataclass(config=ConfigDict(extra="forbid"), slots=True)
class TestNode:
    __test__ = False  # a result's record, not a pytest test class
    node_id: str  # pytest's node id, relative to the tests tree's root (tests/...)
    outcome: NodeOutcome
    duration_s: float = 0.0
    exception: str = ""  # the exception class of a failure or error ("AssertionError")
    message: str = ""  # its first line
    skip_reason: str = ""  # why it was skipped (or the xfail reason)
    expected: str = ""  # the case's reason this node may fail on this platform (its `xfail:`)


class RequestResult(_Model):
    id: str
    ok: bool
    error: str = ""
    images: list[str] = []
    image_sizes: list[list[int]] = []
    text: str = ""
    token_ids: list[int] = []
    # Per generated position: the top-k alternatives (always includes the sampled token).
    logprobs: list[list[TopLogprob]] = []
    prompt_tokens: int | None = None
    # The same prompt with its images left out, tokenized by the engine (token_counts).
    text_only_prompt_tokens: int | None = None
    finish_reason: str | None = None
    latency_s: float | None = None


class Timings(_Model):
    """Seconds per phase of the job (null: the phase did not run); see results/README.md."""

    startup_s: float | None = None  # engine start: process spawned -> ready to serve
    requests_s: float | None = None
    total_s: float | None = None
    engine_reused: bool = False
    peak_rss_mb: float | None = None
    model_s: float | None = None  # building or finding the model
    probes_s: float | None = None  # waiting for the probes after the requests
    checks_s: float | None = None
    shutdown_s: float | None = None  # stopping the engine (null: kept for the next job)


class LogInfo(_Model):
    path: str = ""  # relative to the result file's directory
    tail: str = ""


class Expect(_Model):
    outcome: Literal["pass", "xfail"] = "pass"
    reason: str = ""
    link: str = ""
    strict: bool = True


class Where(_Model):
    """Where a job ran, as far as triage groups by it (from the fingerprint and the host)."""

    agent: str | None = None  # the Buildkite agent's name
    hostname: str | None = None
    gpu_arch: str | None = None  # gfx942, sm_90...
    device: str | None = None  # the device(s) the job saw: name, visible ids
    image_digest: str | None = None

    @property
    def node(self) -> str | None:
        """The machine, for node-local triage: its hostname, else the agent's name."""
        return self.hostname or self.agent


class Signature(_Model):
    """What failed, by the rulebook (harness.signatures): the first rule that matched, or
    ``unclassified`` with the last error line."""

    rule: str
    failure_class: str | None = None  # the rule's class (None: unclassified)
    key: str = ""  # the grouping key: the rule's captures (unclassified: the line, normalized)
    captures: dict[str, str] = {}
    line: str = ""  # the matched line (unclassified: the last error line)
    line_no: int | None = None  # 1-based, in ``source``
    source: str = ""  # the log file's name, or "message"
    link: str = ""
    where: Where = Where()


class Attempt(_Model):
    """One earlier attempt of a retried job (see harness.outcomes: the retry rule)."""

    attempt: int
    status: Status
    failure_class: FailureClass | None = None
    message: str = ""
    result_path: str = ""  # the attempt's own result file, relative to this one
    log: LogInfo = LogInfo()
    image_digest: str | None = None
    finished_at: str = ""
    node: str = ""  # where it ran: "host H (agent A)" (harness.host.repeats)
    signature: Signature | None = None  # a failed attempt's signature (harness.signatures)


class Result(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str
    job_id: str
    case_id: str
    platform: str
    status: Status
    failure_class: FailureClass | None = None
    message: str = ""
    expect: Expect = Expect()
    engine: dict[str, Any] = {}
    checks: list[CheckResult] = []
    requests: list[RequestResult] = []
    traces: dict[str, Any] = {}
    timings: Timings = Timings()
    log: LogInfo = LogInfo()
    fingerprint: dict[str, Any] = {}
    compare: dict[str, Any] = {}  # the case's output-comparison policy, for `harness compare`
    reproduce: str = ""
    # Every attempt of a retried job, the last one included (empty when it ran once).
    attempts: list[Attempt] = []
    harness_traceback: str = ""  # where the harness's own code raised (failure_class harness-error)
    signature: Signature | None = None  # a failed job's failure signature (harness.signatures)
    # A vllm_tests case: one entry per upstream test node that ran (empty for engine cases).
    tests: list[TestNode] = []
    started_at: str = ""
    finished_at: str = ""


NOT_DECISIVE = "passed, but not decisive"  # how such a pass's message starts (dashboard reads it)


def not_applicable(result: "Result") -> list[CheckResult]:
    return [c for c in result.checks if c.outcome == "not-applicable"]


def not_decisive(checks: list[CheckResult]) -> bool:
    """Decisive checks were declared and none of them applied here: not a plain pass."""
    decisive = [c for c in checks if c.decisive]
    return bool(decisive) and all(c.outcome == "not-applicable" for c in decisive)


def not_applicable_line(result: "Result") -> str:
    """'3:log_present (platform lacks encoder_cudagraph); ...' or ''."""
    return "; ".join(f"{c.name} ({c.message})" + (" [decisive]" if c.decisive else "")
                     for c in not_applicable(result))


def status_label(result: "Result") -> str:
    """The status as every report shows it: a pass whose decisive checks did not apply, or
    with checks that did not apply, says so."""
    if result.status in ("passed", "xpassed") and not_decisive(result.checks):
        return f"{result.status} (not decisive: {len(not_applicable(result))} n/a)"
    if result.status in ("passed", "xpassed") and not_applicable(result):
        return f"{result.status} ({len(not_applicable(result))} n/a)"
    return result.status


class ResultFileError(Exception):
    """A result file that is missing, unreadable or not a valid result; names the file."""

    def __init__(self, path: Path | str, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def result_path(results_dir: Path, run_id: str, platform: str, case_id: str) -> Path:
    return Path(results_dir) / run_id / platform / f"{case_id}.json"


class DiskFull(OSError):
    """No space left while writing a result: an infrastructure error that names the file.
    The atomic write leaves the previous content of the file (or none) intact."""

    def __init__(self, path: Path | str):
        super().__init__(errno.ENOSPC, f"no space left on device writing {path}")
        self.path = str(path)

    def __str__(self) -> str:
        return self.strerror


def write_atomic(path: Path, text: str) -> None:
    try:
        _write_atomic(path, text)
    except OSError as exc:
        if exc.errno == errno.ENOSPC and not isinstance(exc, DiskFull):
            raise DiskFull(path) from exc
        raise


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are shared artefacts
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result(path: Path, result: Result) -> None:
    write_atomic(Path(path), result.model_dump_json(indent=2) + "\n")


def read_result(path: Path | str) -> Result:
    """The result in ``path``, parsed and validated in one step (pydantic-core's JSON parser):
    the whole result, for whoever rewrites it or needs every field. Compare and ingest read
    the lighter ``harness.resultview.read_result_view``, which says the same about a bad file.

    Only a file that fails is looked at again, to say why in the words every reader uses:
    missing, unreadable, corrupt JSON at line N, not an object, another schema version, or the
    first invalid field.
    """
    path = Path(path)
    return parse_result(read_result_bytes(path), path)


def parse_result(raw: bytes, path: Path) -> Result:
    """The result in a file's bytes (``path`` names the file in the error)."""
    try:
        return Result.model_validate_json(raw)
    except ValidationError as exc:
        raise why_invalid(path, raw, exc) from None


def read_result_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ResultFileError(path, "missing") from None
    except OSError as exc:
        raise ResultFileError(path, f"unreadable: {exc.strerror or exc}") from None


def why_invalid(path: Path, raw: bytes, exc: ValidationError) -> ResultFileError:
    """The one-line reason pydantic refused ``raw``, found by parsing it again step by step."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as bad:
        return ResultFileError(path, f"not UTF-8 text (byte {bad.start})")
    except json.JSONDecodeError as bad:
        return ResultFileError(path, f"corrupt JSON at line {bad.lineno}: {bad.msg}")
    if not isinstance(data, dict):
        return ResultFileError(path, "not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        return ResultFileError(path, f"schema_version {version!r} is not {SCHEMA_VERSION}")
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return ResultFileError(path, f"invalid result: {where}: {first['msg']}")


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """Python's cycle collector off while many results are read at once.

    A result is an acyclic tree of hundreds of small objects (one per top-k logprob); reading
    ten thousand makes millions, and every full collection walks all of them again: two thirds
    of reading 10,000 results went to the collector (benchmarks/bench_compare.py). Reference
    counting still frees everything; the collector resumes, as it was, on the way out.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# What else the harness writes into a platform directory (results/README.md), named in one
# place for the readers that must tell it from results: per run, the worker's and the
# container's logs (``-<shard>`` when sharded); per case, besides ``<case>.log`` (the engine's),
# side files ``<case>.<what>.<ext>``: ``.probes.log``, ``.model.log`` (building a tiny model),
# and a retried job's first attempt ``.attempt1.json``/``.log``. Case ids have no dot
# (harness.spec.case.ID_RE), so a name with a dot in its stem is never a case's result or log.
WORKER_LOG = "worker.log"
CONTAINER_LOG = "container.log"
_RUN_LOG_RE = re.compile(r"^(worker|container)(-\d+)?\.log$")


def case_of_log(name: str) -> str | None:
    """The case whose result a ``*.log`` in a platform directory belongs with (``<case>.log``),
    or None for the run's own logs and a case's side logs, which need no result of their own."""
    stem = name[:-len(".log")] if name.endswith(".log") else None
    if not stem or "." in stem or _RUN_LOG_RE.match(name):
        return None
    return stem


def _is_result_file(path: Path) -> bool:
    # ".<name>.json.*.tmp": an atomic write in progress; "<case>.attempt1.json": an earlier
    # attempt kept beside its job's result (a case id never holds a dot: harness.spec.case.ID_RE).
    return not path.name.startswith(".") and "." not in path.stem


def iter_result_files(run_dir: Path) -> list[Path]:
    """``<run>/<platform>/<case>.json`` files, sorted; temp files are not results.

    Sorted by name, as paths sort, without comparing Path objects: ten thousand of those
    comparisons took longer than listing the files."""
    return sorted(filter(_is_result_file, Path(run_dir).glob("*/*.json")),
                  key=lambda p: (p.parent.name, p.name))


def platform_result_files(platform_dir: Path) -> list[Path]:
    """``<case>.json`` files of one platform directory, sorted."""
    return sorted(filter(_is_result_file, Path(platform_dir).glob("*.json")),
                  key=lambda p: p.name)


def has_result_files(platform_dir: Path) -> bool:
    return any(filter(_is_result_file, Path(platform_dir).glob("*.json")))


TRACEBACK = "Traceback (most recent call last)"


def tail(text: str, lines: int = 60, max_chars: int = 8000, traceback_chars: int = 24000) -> str:
    """The last lines of a log; widened to start at the last traceback when one is near the end,
    so a result always shows the whole traceback of a crash, not just its last frames."""
    cut = "\n".join(text.splitlines()[-lines:])[-max_chars:]
    start = text.rfind(TRACEBACK)
    if start != -1 and TRACEBACK not in cut and len(text) - start <= traceback_chars:
        return text[text.rfind("\n", 0, start) + 1:]
    return cut
