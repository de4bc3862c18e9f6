"""Run ids: one per build (so every platform's step of a Buildkite build writes the same run)."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone


def new_run_id(environ: dict[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    build = environ.get("BUILDKITE_BUILD_NUMBER")
    if build and re.fullmatch(r"\d+", build):
        return f"build-{build}"
    return "local-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def is_valid_run_id(run_id: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,99}", run_id) is not None
