"""A failed job's signature, from its logs, with where it ran (pure apart from reading logs).

The sources, in the order they are read: the job's own (its engine log and the harness's
message about it), then, if nothing there matched a rule, the worker's log (a container's
output when the harness started a container), which all jobs of a worker share. The first rule
of the rulebook that matches names the failure; none: ``unclassified`` with the last error line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from harness.results import Result, Signature, Where
from harness.runinfo import hostname
from harness.signatures.rulebook import UNCLASSIFIED, Rulebook, default_rulebook
from harness.signatures.scan import Source, classify, last_error_line, normalized

SIGNED_STATUSES = ("failed", "error")
# The visible-device settings that say which GPU(s) of the node a job had.
_DEVICE_ENV = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def where_of(result: Result, environ: dict[str, str] | None = None) -> Where:
    """Where the job ran: the fingerprint's fields, the host's name where the worker wrote
    none (a placeholder result of a worker that died is written on the same host)."""
    environ = os.environ if environ is None else environ
    fp = result.fingerprint
    buildkite = fp.get("buildkite") or {}
    gpu_env = fp.get("gpu_env") or {}
    visible = [f"{name}={gpu_env[name]}" for name in _DEVICE_ENV if gpu_env.get(name)]
    device = " ".join(filter(None, [fp.get("device"), *visible])) or None

    def text(value) -> str | None:
        return str(value) if value not in (None, "") else None

    return Where(agent=text(buildkite.get("agent_name") or environ.get("BUILDKITE_AGENT_NAME")),
                 hostname=text(fp.get("hostname")) or hostname(),
                 gpu_arch=text(fp.get("gpu_arch")), device=device,
                 image_digest=text(fp.get("image_digest")))


def sources_of(result: Result, platform_dir: Path, worker_log: Path | None
               ) -> tuple[list[Source], list[Source]]:
    """(the job's own sources, the shared worker log) of a result in ``platform_dir``."""
    own: list[Source] = []
    log_name = result.log.path
    if log_name and (worker_log is None or log_name != worker_log.name):
        data = _read(platform_dir / log_name)
        if data is not None:
            own.append(Source(log_name, "engine", data))
    if result.message:
        own.append(Source("message", "harness", result.message.encode("utf-8")))
    shared: list[Source] = []
    data = _read(worker_log)
    if data is not None and worker_log is not None:
        launch = (result.fingerprint or {}).get("launch")
        shared.append(Source(worker_log.name, "container" if launch == "container" else "worker",
                             data))
    return own, shared


def signature_of(own: list[Source], shared: list[Source], where: Where,
                 rulebook: Rulebook | None = None) -> Signature:
    rulebook = rulebook or default_rulebook()
    match = classify(rulebook, own) or classify(rulebook, shared)
    if match is not None:
        return Signature(rule=match.rule.name, failure_class=match.rule.failure_class,
                         key=match.key, captures=match.captures, line=match.line,
                         line_no=match.line_no, source=match.source, link=match.rule.link,
                         where=where)
    last = last_error_line(rulebook, own) or last_error_line(rulebook, shared)
    if last is None:  # no line reads like an error: the harness's own words about the job
        said = next((s for s in own if s.scope == "harness"), None)
        text = said.data.decode("utf-8", "replace").strip() if said else ""
        last = (text.splitlines()[0][:2000], 1, said.name) if text and said else None
    line, line_no, source = last if last else ("", None, "")
    return Signature(rule=UNCLASSIFIED, key=normalized(line), line=line, line_no=line_no,
                     source=source, where=where)


def sign(result: Result, platform_dir: Path, worker_log: Path | None,
         rulebook: Rulebook | None = None) -> Result:
    """The result with its signature, if it is a failure without one; else as it is."""
    if result.status not in SIGNED_STATUSES or result.signature is not None:
        return result
    own, shared = sources_of(result, Path(platform_dir), worker_log)
    return result.model_copy(update={"signature": signature_of(own, shared, where_of(result),
                                                               rulebook)})


def unsigned(results: Iterable[Result]) -> list[int]:
    """Indexes of the failures among ``results`` that carry no signature yet."""
    return [i for i, r in enumerate(results)
            if r.status in SIGNED_STATUSES and r.signature is None]
