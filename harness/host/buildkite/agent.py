"""Every call the harness makes to ``buildkite-agent`` goes through here.

Outside Buildkite (``BUILDKITE`` unset) each call is skipped with a one-line notice on stderr,
so the same harness commands work on a bare MI300 node. On Buildkite every call has a deadline,
annotation bodies are redacted (no secret reaches a build page), and a failure raises
``AgentError``, an infrastructure error (exit 3) for the caller.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

from harness.secrets import redact

ANNOTATION_MAX_BYTES = 1024 * 1024  # Buildkite rejects larger annotation bodies
ANNOTATION_STYLES = ("success", "info", "warning", "error")
DEFAULT_TIMEOUT_S = 120.0
TRANSFER_TIMEOUT_S = 900.0  # artifact transfers move result folders, logs included
_CONTEXT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
_TRUNCATED = "\n\n_(truncated: the full report is in the step's artifacts)_\n"


class AgentError(RuntimeError):
    """``buildkite-agent`` failed, timed out, or is not installed."""


def on_buildkite(environ: dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get("BUILDKITE", "").lower() == "true"


def fit_annotation(body: str, max_bytes: int = ANNOTATION_MAX_BYTES) -> str:
    """``body`` cut on a line boundary, with a note, when it is over Buildkite's size limit."""
    data = body.encode("utf-8")
    if len(data) <= max_bytes:
        return body
    room = max_bytes - len(_TRUNCATED.encode("utf-8"))
    cut = data[:room].decode("utf-8", errors="ignore")
    return cut[: cut.rfind("\n") + 1 or len(cut)] + _TRUNCATED


@dataclass
class Agent:
    """``buildkite-agent`` with deadlines; ``environ`` and ``executable`` are injectable."""

    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    executable: str = "buildkite-agent"
    notices: TextIO = field(default_factory=lambda: sys.stderr)
    timeout_s: float = DEFAULT_TIMEOUT_S  # for every call but artifact transfers

    @property
    def active(self) -> bool:
        return on_buildkite(self.environ)

    def _call(self, args: Sequence[str], stdin: str | None = None,
              timeout_s: float | None = None) -> str | None:
        """stdout of ``buildkite-agent args``; None (after a notice) outside Buildkite."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        shown = " ".join(args[:3])
        if not self.active:
            print(f"harness: not on Buildkite (BUILDKITE unset), skipped: buildkite-agent {shown}",
                  file=self.notices)
            return None
        try:
            done = subprocess.run([self.executable, *args], input=stdin, capture_output=True,
                                  text=True, timeout=timeout_s, env=self.environ)
        except FileNotFoundError:
            raise AgentError(f"{self.executable} not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise AgentError(f"buildkite-agent {shown}: no answer within {timeout_s:g} s") from None
        if done.returncode != 0:
            why = redact(done.stderr.strip() or done.stdout.strip(), self.environ)[-500:]
            raise AgentError(f"buildkite-agent {shown} exited {done.returncode}: {why}")
        return done.stdout

    def annotate(self, body: str, context: str, style: str = "info",
                 append: bool = False) -> bool:
        """Post (or, same ``context``, replace) an annotation. False when skipped."""
        if style not in ANNOTATION_STYLES:
            raise ValueError(f"annotation style {style!r} is not one of {ANNOTATION_STYLES}")
        if not _CONTEXT_RE.fullmatch(context):
            raise ValueError(f"annotation context {context!r}: use letters, digits, _ . -")
        args = ["annotate", "--context", context, "--style", style]
        if append:
            args.append("--append")
        body = fit_annotation(redact(body, self.environ))
        return self._call(args, stdin=body) is not None

    def artifact_upload(self, pattern: str, timeout_s: float = TRANSFER_TIMEOUT_S) -> bool:
        return self._call(["artifact", "upload", pattern], timeout_s=timeout_s) is not None

    def artifact_download(self, query: str, destination: Path | str, step: str | None = None,
                          timeout_s: float = TRANSFER_TIMEOUT_S, build: str | None = None
                          ) -> bool:
        """``build``: another build's id (UUID); default this build."""
        args = ["artifact", "download", query, str(destination)]
        if step:
            args += ["--step", step]
        if build:
            args += ["--build", build]
        return self._call(args, timeout_s=timeout_s) is not None

    def meta_data_set(self, key: str, value: str) -> bool:
        return self._call(["meta-data", "set", key], stdin=redact(value, self.environ)) is not None

    def meta_data_get(self, key: str, default: str | None = None) -> str | None:
        args = ["meta-data", "get", key] + ([] if default is None else ["--default", default])
        value = self._call(args)
        return default if value is None else value

    def pipeline_upload(self, yaml_text: str) -> bool:
        return self._call(["pipeline", "upload"], stdin=yaml_text) is not None
