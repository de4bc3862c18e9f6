"""Histories for tests and benchmarks, derived from real result files.

Nothing here invents a result from scratch: each generated result is a real one (read with
``read_result``) copied and minimally changed: run id, case id, platform, status, failure class,
timings, build number and commit, and, to plant an output change, one token id shifted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence

from harness.history.queries import Row
from harness.history.rows import (LOG_TAIL_LINES, Fingerprint, ResultRow, SignatureRow,
                                  output_digest, result_row, token_digest, verdict)
from harness.results import Result, Signature, Where, read_result
from harness.signatures.attach import signature_of
from harness.signatures.scan import Source

PLATFORMS = (("cpu", "cpu"), ("rocm", "rocm"), ("cuda", "cuda"))
FIRST_BUILD = 4000
FIRST_NIGHT = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Outcome:
    """What happens to one case on one platform on one night."""

    status: str = "passed"
    failure_class: str | None = None
    message: str = ""
    time_factor: float = 1.0  # multiplies the real result's timings
    output_variant: int = 0  # added to the first token id of every request: a new output
    log_line: str = ""  # appended to the log tail (and the log file)
    node: str = ""  # the machine it ran on ("": the platform's usual rotation, node_for)


NODES_PER_PLATFORM = 4


def node_for(platform: str, case_id: str, night: int) -> str:
    """Where a job runs when the scenario does not say: the platform's nodes take the cases
    in turn, a different one each night (as a sharded nightly spreads them)."""
    return f"{platform}-node-{(zlib.crc32(case_id.encode()) + night) % NODES_PER_PLATFORM + 1}"


def planted_signature(template: Result, place: "Place", outcome: Outcome) -> Signature | None:
    """A failure's signature, by the real rulebook over its log tail (the template's, with the
    outcome's line) and its message: the same whether the result is written or only a row."""
    if verdict(outcome.status) != "bad":
        return None
    own = [Source(f"{place.case_id}.log", "engine",
                  (template.log.tail + (f"\n{outcome.log_line}" if outcome.log_line else "")
                   ).encode()),
           Source("message", "harness", outcome.message.encode())]
    where = Where(hostname=outcome.node or node_for(place.platform, place.case_id, place.night),
                  gpu_arch=template.fingerprint.get("gpu_arch"))
    return signature_of(own, [], where)


Scenario = Callable[[str, str, int], Outcome]  # (case id, platform, night) -> outcome


def steady(case_id: str, platform: str, night: int) -> Outcome:
    return Outcome()


def load_templates(run_dir: Path) -> list[tuple[Result, str]]:
    """Real results of a run, each with its log text ("" where the log is not there)."""
    out = []
    for path in sorted(Path(run_dir).glob("*/*.json")):
        if path.name.startswith("."):
            continue
        result = read_result(path)
        log = path.parent / result.log.path if result.log.path else None
        text = log.read_text(encoding="utf-8", errors="replace") if log and log.is_file() else ""
        out.append((result, text))
    if not out:
        raise FileNotFoundError(f"{run_dir}: no result files to derive a history from")
    return out


def commit_of(build: int) -> str:
    return hashlib.sha1(f"build-{build}".encode()).hexdigest()


def case_ids(templates: Sequence[Result], count: int) -> list[str]:
    """``count`` case ids: the real ones first, then numbered copies of them."""
    base = [t.case_id for t in templates]
    ids = list(base[:count])
    i = 0
    while len(ids) < count:
        ids.append(f"{base[i % len(base)]}-{i // len(base) + 1:03d}")
        i += 1
    return ids


@dataclass(frozen=True)
class Place:
    """Where a generated result sits: its run (night), platform and case."""

    night: int
    platform: str
    accelerator: str
    case_id: str

    @property
    def build(self) -> int:
        return FIRST_BUILD + self.night

    @property
    def run_id(self) -> str:
        return f"build-{self.build}"

    @property
    def started_at(self) -> str:
        return (FIRST_NIGHT + timedelta(days=self.night)).isoformat(timespec="seconds")


def _fingerprint(template: Result, place: Place, node: str = "") -> dict:
    return {**template.fingerprint, "platform": place.platform, "accelerator": place.accelerator,
            "hostname": node or node_for(place.platform, place.case_id, place.night),
            "image_digest": "sha256:" + hashlib.sha256(
                f"{place.platform}-{place.night // 7}".encode()).hexdigest(),
            "buildkite": {**(template.fingerprint.get("buildkite") or {}),
                          "build_number": str(place.build), "commit": commit_of(place.build),
                          "build_url": f"https://buildkite.com/vllm/ci/builds/{place.build}"}}


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else round(value * factor, 3)


def synth_result(template: Result, place: Place, outcome: Outcome) -> Result:
    requests = [r.model_copy(update={"token_ids": [r.token_ids[0] + outcome.output_variant,
                                                   *r.token_ids[1:]]})
                if outcome.output_variant and r.token_ids else r for r in template.requests]
    tail = template.log.tail + (f"\n{outcome.log_line}" if outcome.log_line else "")
    timings = template.timings.model_copy(update={
        key: _scaled(getattr(template.timings, key), outcome.time_factor)
        for key in ("startup_s", "requests_s", "total_s")})
    good = outcome.status in ("passed", "xfailed", "skipped")
    return template.model_copy(update={
        "run_id": place.run_id, "case_id": place.case_id, "platform": place.platform,
        "job_id": f"{place.case_id}@{place.platform}", "status": outcome.status,
        "failure_class": None if good else (outcome.failure_class or "check-failed"),
        "message": outcome.message, "requests": requests, "timings": timings,
        "log": template.log.model_copy(update={"path": f"{place.case_id}.log", "tail": tail}),
        "fingerprint": _fingerprint(template, place, outcome.node),
        "started_at": place.started_at, "finished_at": place.started_at,
        "signature": planted_signature(template, place, outcome)})


def write_night(results_dir: Path, night: int, cases: Sequence[str],
                templates: Sequence[tuple[Result, str]], scenario: Scenario = steady,
                platforms: Sequence[tuple[str, str]] = PLATFORMS, logs: bool = True) -> Path:
    """One night's run directory: every case on every platform."""
    run_dir = None
    for platform, accelerator in platforms:
        for i, case_id in enumerate(cases):
            template, log_text = templates[i % len(templates)]
            place = Place(night, platform, accelerator, case_id)
            outcome = scenario(case_id, platform, night)
            result = synth_result(template, place, outcome)
            path = Path(results_dir) / place.run_id / platform / f"{case_id}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            # The bytes write_result writes, without its fsync: generated histories are
            # throwaway fixtures, and a few hundred fsyncs would make the tests slow.
            path.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
            if logs:
                extra = f"{outcome.log_line}\n" if outcome.log_line else ""
                path.with_suffix(".log").write_text(log_text + extra, encoding="utf-8")
            run_dir = path.parent.parent
    assert run_dir is not None, "no platform or no case to write"
    return run_dir


def write_history(results_dir: Path, nights: int, cases: Sequence[str],
                  templates: Sequence[tuple[Result, str]], scenario: Scenario = steady,
                  platforms: Sequence[tuple[str, str]] = PLATFORMS, logs: bool = True
                  ) -> list[Path]:
    return [write_night(results_dir, night, cases, templates, scenario, platforms, logs)
            for night in range(nights)]


class RowFactory:
    """History rows straight from real results, without files: for a year-sized benchmark.

    Equal to ``result_row(synth_result(...))`` (a test checks it, file digest aside) but much
    cheaper: each template's row is built once, and what varies is cached per night/variant.
    """

    def __init__(self, templates: Sequence[Result]):
        self.templates = list(templates)
        self._rows = [result_row(t, "") for t in self.templates]
        self._requests: dict[tuple[int, int], tuple[tuple, str | None]] = {}
        self._fingerprints: dict[tuple[int, int, str, str], Fingerprint] = {}
        self._tails: dict[tuple[int, str], str] = {}
        self._signatures: dict[tuple[int, str, str, str], SignatureRow | None] = {}

    def _outputs(self, index: int, variant: int) -> tuple[tuple, str | None]:
        key = (index, variant)
        if key not in self._requests:
            requests = tuple(
                dataclasses.replace(q, output_digest=token_digest(
                    [r.token_ids[0] + variant, *r.token_ids[1:]]))
                if q.output_digest is not None and variant else q
                for q, r in zip(self._rows[index].requests, self.templates[index].requests))
            self._requests[key] = (requests, output_digest(
                [(q.request_id, q.output_digest) for q in requests]))
        return self._requests[key]

    def _fingerprint(self, index: int, place: Place) -> Fingerprint:
        key = (index, place.night, place.platform, place.accelerator)
        if key not in self._fingerprints:
            fp = _fingerprint(self.templates[index], place)
            self._fingerprints[key] = dataclasses.replace(
                self._rows[index].fingerprint, build_number=place.build,
                commit=fp["buildkite"]["commit"], image_digest=fp["image_digest"],
                build_url=fp["buildkite"]["build_url"], accelerator=place.accelerator)
        return self._fingerprints[key]

    def _tail(self, index: int, log_line: str) -> str:
        key = (index, log_line)
        if key not in self._tails:
            tail = self.templates[index].log.tail + (f"\n{log_line}" if log_line else "")
            self._tails[key] = "\n".join(tail.splitlines()[-LOG_TAIL_LINES:])
        return self._tails[key]

    def _signature(self, index: int, place: Place, outcome: Outcome) -> SignatureRow | None:
        key = (index, outcome.status, outcome.log_line, outcome.message)
        if key not in self._signatures:
            sig = planted_signature(self.templates[index], place, outcome)
            self._signatures[key] = None if sig is None else SignatureRow(
                sig.rule, sig.key, sig.failure_class, sig.line, sig.line_no, sig.source)
        return self._signatures[key]

    def row(self, index: int, place: Place, outcome: Outcome) -> ResultRow:
        index %= len(self._rows)
        base = self._rows[index]
        requests, digest = self._outputs(index, outcome.output_variant)
        bad = verdict(outcome.status) == "bad"
        good = outcome.status in ("passed", "xfailed", "skipped")
        factor = outcome.time_factor
        return ResultRow(
            run_id=place.run_id, platform=place.platform, case_id=place.case_id,
            job_id=f"{place.case_id}@{place.platform}",
            fingerprint=self._fingerprint(index, place), status=outcome.status,
            failure_class=None if good else (outcome.failure_class or "check-failed"),
            message=outcome.message, started_at=place.started_at, finished_at=place.started_at,
            startup_s=_scaled(base.startup_s, factor), requests_s=_scaled(base.requests_s, factor),
            total_s=_scaled(base.total_s, factor), peak_rss_mb=base.peak_rss_mb,
            output_digest=digest, log_path=f"{place.case_id}.log",
            log_tail=self._tail(index, outcome.log_line) if bad else "",
            file_sha256=hashlib.sha256(f"{place.run_id}/{place.platform}/{place.case_id}/"
                                       f"{outcome}".encode()).hexdigest(),
            requests=requests,
            node=outcome.node or node_for(place.platform, place.case_id, place.night),
            gpu_arch=self.templates[index].fingerprint.get("gpu_arch"),
            signature=self._signature(index, place, outcome))

    def query_rows(self, nights: int, cases: Sequence[str], scenario: Scenario = steady,
                   platforms: Sequence[tuple[str, str]] = PLATFORMS) -> list[Row]:
        """A whole history as the queries see it (night = index), no store in between."""
        out = []
        for night in range(nights):
            for platform, accelerator in platforms:
                for i, case_id in enumerate(cases):
                    row = self.row(i, Place(night, platform, accelerator, case_id),
                                   scenario(case_id, platform, night))
                    out.append(Row(row.case_id, row.platform, night, row.status,
                                   row.failure_class, row.fingerprint.build_number,
                                   row.fingerprint.commit, row.output_digest, row.total_s,
                                   len(out) + 1))
        return out
