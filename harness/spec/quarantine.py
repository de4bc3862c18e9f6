"""The quarantine list (``cases/quarantine.yaml``): failures known and tracked, for a while.

    quarantine:
      - case: phi4mm_variable_crop
        platform: rocm
        until: 2026-12-31        # the last day it holds; the day after, the case is red again
        link: https://github.com/vllm-project/vllm/issues/12345
        reason: ragged crop masks crash the encoder (optional)

``harness compare`` reads it: a candidate failure (what would make the build red) of a
quarantined case on its platform becomes the verdict ``quarantined``: shown with its link and
date in every report (terminal, Markdown, JUnit, JSON summary, dashboard), counted, and exit 0.
It expires by itself: on the day after ``until`` the same failure is red again, its report
saying that the quarantine expired. Pure apart from ``load_quarantine``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import Field

from harness.spec.platform import Strict
from harness.spec.yamlsource import load_located, validate_model

QUARANTINE_FILE = "quarantine.yaml"  # known failures, until a date, beside the cases

_ID = r"^[a-z0-9][a-z0-9_\-]*$"


class Quarantined(Strict):
    case: str = Field(pattern=_ID)
    platform: str = Field(pattern=_ID)
    until: dt.date
    link: str = Field(pattern=r"^https?://\S+$")
    reason: str = ""

    def holds_on(self, today: dt.date) -> bool:
        return today <= self.until

    def label(self) -> str:
        return f"quarantined until {self.until.isoformat()}: {self.link}" + (
            f" ({self.reason})" if self.reason else "")


class QuarantineFile(Strict):
    quarantine: list[Quarantined] = []


def load_quarantine(path: Path | str) -> list[Quarantined]:
    """The entries of a quarantine file; bad input is a ``SpecError`` (file:line: key)."""
    located = load_located(path)
    # YAML reads 2026-12-31 as a date already; strict pydantic takes it as one.
    return list(validate_model(located, QuarantineFile).quarantine)


def default_quarantine(case_dir: Path = Path("cases")) -> list[Quarantined]:
    path = case_dir / QUARANTINE_FILE
    return load_quarantine(path) if path.is_file() else []


def find(entries: list[Quarantined], case_id: str, platform: str) -> Quarantined | None:
    """The entry for this case and platform with the latest ``until`` (None: none listed)."""
    listed = [e for e in entries if e.case == case_id and e.platform == platform]
    return max(listed, key=lambda e: e.until, default=None)


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()
