"""What the board shows, computed from the history (pure; dashboard.py only renders it).

Questions about the past (flaky, first bad, drift) are asked of each case's whole stored series;
the grid itself shows the last ``nights`` nights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from harness.history.queries import (Drift, FirstBad, FlakeRule, Flakiness, Night, NightParity,
                                     Row, first_bad, flakiness, output_drift, parity,
                                     series_by_key)
from harness.history.rows import verdict

DEFAULT_NIGHTS = 30


@dataclass
class CaseLine:
    """One case on one platform: a row of the grid."""

    case_id: str
    platform: str
    cells: list[Row | None]  # one per shown night; None: not run that night
    flaky: Flakiness
    first_bad: FirstBad | None
    drift_nights: set[int]  # shown nights (indices) where a passing output changed
    drifts: list[Drift]
    last: Row | None  # the platform's latest night, if the case ran then

    @property
    def broken_now(self) -> bool:
        return self.last is not None and verdict(self.last.status) == "bad"

    @property
    def newly_broken(self) -> bool:
        """Bad on the platform's latest night, and good the run before (or never ran before)."""
        return (self.broken_now and self.first_bad is not None
                and self.first_bad.first_bad.night == self.last.night)

    @property
    def problem(self) -> bool:
        return self.broken_now or self.flaky.flaky or bool(self.drift_nights)


@dataclass
class PlatformBoard:
    name: str
    accelerator: str | None
    latest_night: int | None  # the last night this platform ran
    lines: list[CaseLine]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.lines:
            if line.last is not None:
                out[line.last.status] = out.get(line.last.status, 0) + 1
        return out


@dataclass
class ParityBoard:
    platform_a: str
    platform_b: str
    nights: list[NightParity]


@dataclass
class Board:
    nights: list[Night]  # all nights, in order
    shown: list[Night]  # the grid's columns
    platforms: list[PlatformBoard]
    parity: list[ParityBoard] = field(default_factory=list)

    @property
    def latest(self) -> Night | None:
        return self.nights[-1] if self.nights else None


def _parity_pairs(platforms: list[PlatformBoard]) -> list[tuple[str, str]]:
    rocm = [p.name for p in platforms if p.accelerator == "rocm"]
    cuda = [p.name for p in platforms if p.accelerator == "cuda"]
    return [(a, b) for a in rocm for b in cuda]


def build_board(nights: Sequence[Night], rows: Sequence[Row], shown_nights: int = DEFAULT_NIGHTS,
                rule: FlakeRule = FlakeRule()) -> Board:
    nights = list(nights)
    shown = nights[-shown_nights:] if shown_nights > 0 else []
    first_shown = shown[0].index if shown else len(nights)
    column = {night.index: i for i, night in enumerate(shown)}
    series = series_by_key(rows)
    platforms: list[PlatformBoard] = []
    for platform in sorted({platform for _, platform in series}):
        ran = [n for n in nights if platform in n.platforms]
        latest = ran[-1].index if ran else None
        accelerator = next((n.platform_run(platform).accelerator for n in reversed(ran)
                            if n.platform_run(platform).accelerator), None)
        lines = []
        for (case_id, _), history in sorted((k, v) for k, v in series.items()
                                            if k[1] == platform):
            cells: list[Row | None] = [None] * len(shown)
            for row in history:
                if row.night >= first_shown:
                    cells[column[row.night]] = row
            drifts = output_drift(history)
            last = history[-1] if history[-1].night == latest else None
            lines.append(CaseLine(case_id, platform, cells, flakiness(history, rule),
                                  first_bad(history),
                                  {d.after.night for d in drifts if d.after.night >= first_shown},
                                  drifts,
                                  last))
        platforms.append(PlatformBoard(platform, accelerator, latest, lines))
    shown_rows = [row for row in rows if row.night >= first_shown]
    pairs = [ParityBoard(a, b, parity(shown_rows, a, b)) for a, b in _parity_pairs(platforms)]
    return Board(nights, shown, platforms, pairs)
