"""A result file as history rows: what the store keeps of it (pure, no I/O).

The store keeps what the board needs, not the whole result: identity, verdict, timings, the
environment it ran in (build, commit, vLLM version, image digest) and one digest per request of
the generated token ids, so that a changed output is visible without storing the tokens.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from harness.results import Result, not_decisive

# The history's failure_class for a pass whose decisive checks did not apply (not a class of
# harness.outcomes: it lives only in the store and the page).
NOT_DECISIVE_MARK = "not-decisive"

# How a status reads on the board. "bad" counts for broken, flaky and first-bad alike: an OOM or
# a startup timeout after a vLLM change is a regression as much as a failed check is.
GOOD = frozenset({"passed", "xfailed"})
BAD = frozenset({"failed", "error", "xpassed"})
NEUTRAL = frozenset({"skipped"})
LOG_TAIL_LINES = 8  # kept for bad results only: the board shows them beside the failure


def verdict(status: str) -> str:
    if status in GOOD:
        return "good"
    if status in BAD:
        return "bad"
    return "neutral"


def token_digest(token_ids: list[int]) -> str:
    """sha256 of the token ids written as decimal numbers joined by commas."""
    return hashlib.sha256(",".join(map(str, token_ids)).encode()).hexdigest()


def output_digest(request_digests: list[tuple[str, str | None]]) -> str | None:
    """One digest for a result's outputs: over ``id=digest`` lines sorted by request id."""
    if not any(digest for _, digest in request_digests):
        return None
    lines = sorted(f"{rid}={digest or '-'}" for rid, digest in request_digests)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def utc_timestamp(text: str) -> str | None:
    """ISO 8601 in UTC with seconds, so that timestamps sort as strings; None for empty."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:  # the worker writes UTC; a naive stamp is taken to be UTC too
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _build_number(result: Result) -> int | None:
    raw = str((result.fingerprint.get("buildkite") or {}).get("build_number") or "")
    if raw.isdigit():
        return int(raw)
    match = re.fullmatch(r"build-(\d+)", result.run_id)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Fingerprint:
    """The environment a result ran in, as far as the board tells nights apart by it."""

    build_number: int | None
    commit: str | None
    vllm_version: str | None
    image_digest: str | None
    build_url: str | None
    accelerator: str | None

    @property
    def key(self) -> str:
        return json.dumps([self.build_number, self.commit, self.vllm_version, self.image_digest,
                           self.build_url, self.accelerator])


def fingerprint_of(result: Result) -> Fingerprint:
    fp = result.fingerprint
    buildkite = fp.get("buildkite") or {}

    def text(value) -> str | None:
        return str(value) if value not in (None, "") else None

    return Fingerprint(
        build_number=_build_number(result),
        # On vLLM's Buildkite the build's commit is the vLLM commit under test; elsewhere the
        # checkout's own commit is the best there is.
        commit=text(buildkite.get("commit")) or text(fp.get("git_commit")),
        vllm_version=text(fp.get("vllm")),
        image_digest=text(fp.get("image_digest")),
        build_url=text(buildkite.get("build_url")),
        accelerator=text(fp.get("accelerator")))


@dataclass(frozen=True)
class RequestRow:
    request_id: str
    ok: bool
    output_digest: str | None
    n_tokens: int
    latency_s: float | None


@dataclass(frozen=True)
class SignatureRow:
    """A failed result's signature as stored (harness.signatures; table ``signatures``)."""

    rule: str
    key: str
    failure_class: str | None
    line: str
    line_no: int | None
    source: str


@dataclass(frozen=True)
class ResultRow:
    run_id: str
    platform: str
    case_id: str
    job_id: str
    fingerprint: Fingerprint
    status: str
    failure_class: str | None
    message: str
    started_at: str | None
    finished_at: str | None
    startup_s: float | None
    requests_s: float | None
    total_s: float | None
    peak_rss_mb: float | None
    output_digest: str | None
    log_path: str
    log_tail: str
    file_sha256: str
    requests: tuple[RequestRow, ...]
    node: str | None = None  # the machine it ran on (hostname, else the Buildkite agent)
    gpu_arch: str | None = None
    signature: SignatureRow | None = None
    # A vllm_tests result's nodes (harness.results.TestNode views): harness.history.nodes keeps
    # what changed of them, never a row per passing node.
    tests: tuple = ()


def _text(value) -> str | None:
    return str(value) if value not in (None, "") else None


def node_of(result: Result) -> tuple[str | None, str | None]:
    """(node, gpu arch) of a result: its signature's where, else its fingerprint."""
    if result.signature is not None:
        where = result.signature.where
        return where.hostname or where.agent, where.gpu_arch
    fp = result.fingerprint
    return (_text(fp.get("hostname")) or _text((fp.get("buildkite") or {}).get("agent_name")),
            _text(fp.get("gpu_arch")))


def signature_row(result: Result) -> SignatureRow | None:
    sig = result.signature
    if sig is None:
        return None
    return SignatureRow(sig.rule, sig.key, sig.failure_class, sig.line, sig.line_no, sig.source)


def result_row(result: Result, file_sha256: str) -> ResultRow:
    requests = tuple(
        RequestRow(r.id, r.ok, token_digest(r.token_ids) if r.ok and r.token_ids else None,
                   len(r.token_ids), r.latency_s)
        for r in result.requests)
    bad = verdict(result.status) == "bad"
    node, gpu_arch = node_of(result)
    return ResultRow(
        run_id=result.run_id, platform=result.platform, case_id=result.case_id,
        job_id=result.job_id, fingerprint=fingerprint_of(result), status=result.status,
        # A pass whose decisive checks did not apply is stored with this mark in place of a
        # class, so the page can tell it from a plain pass without loading its message.
        failure_class=(NOT_DECISIVE_MARK if result.status == "passed" and not_decisive(
            result.checks) else result.failure_class), message=result.message,
        started_at=utc_timestamp(result.started_at), finished_at=utc_timestamp(result.finished_at),
        startup_s=result.timings.startup_s, requests_s=result.timings.requests_s,
        total_s=result.timings.total_s, peak_rss_mb=result.timings.peak_rss_mb,
        output_digest=output_digest([(r.request_id, r.output_digest) for r in requests]),
        log_path=result.log.path,
        log_tail="\n".join(result.log.tail.splitlines()[-LOG_TAIL_LINES:]) if bad else "",
        file_sha256=file_sha256, requests=requests, node=node, gpu_arch=gpu_arch,
        signature=signature_row(result), tests=tuple(result.tests))
