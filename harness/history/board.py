"""What the board shows, computed from the history (pure; dashboard.py only renders it).

The grid shows the last ``nights`` nights. Questions about the past are asked of a window: the
shown nights and ``lookback_nights`` before them (flakiness is vLLM's rule over the last 14 runs,
output drift is against the previous passing night). Only a first bad run older than the window
needs more: ``unresolved_first_bad`` names those series, ``resolve_first_bad`` takes their past.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from harness.history.queries import (Drift, FirstBad, FlakeRule, Flakiness, Key, Night,
                                     NightParity, Row, first_bad, flakiness, output_drift,
                                     parity, series_by_key)
from harness.history.rows import NEUTRAL, verdict

DEFAULT_NIGHTS = 30


def lookback_nights(rule: FlakeRule = FlakeRule()) -> int:
    """Nights read before the shown ones: twice the flake window, for skipped nights and the
    reinstatement run (five passes in a row) to fit."""
    return 2 * max(rule.window, rule.reinstate_after + rule.min_runs)


def first_loaded_night(nights: Sequence[Night], shown_nights: int,
                       rule: FlakeRule = FlakeRule()) -> int:
    """The first night index the board needs loaded."""
    return max(0, len(nights) - max(shown_nights, 0) - lookback_nights(rule))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of non-empty ``values`` (p90 of ten timings is the 9th)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


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
    history: list[Row] = field(default_factory=list, repr=False)  # the loaded window

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
    # Per shown night: (median, p90) of the job durations (total_s; skipped jobs left out).
    durations: list[tuple[float | None, float | None]] = field(default_factory=list)

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


def _durations(rows: Sequence[Row], platform: str, shown: Sequence[Night]
               ) -> list[tuple[float | None, float | None]]:
    column = {night.index: i for i, night in enumerate(shown)}
    per_night: list[list[float]] = [[] for _ in shown]
    for row in rows:
        i = column.get(row.night)
        if (i is not None and row.platform == platform and row.total_s is not None
                and row.status not in NEUTRAL):
            per_night[i].append(row.total_s)
    return [(statistics.median(v), percentile(v, 0.9)) if v else (None, None)
            for v in per_night]


def build_board(nights: Sequence[Night], rows: Sequence[Row], shown_nights: int = DEFAULT_NIGHTS,
                rule: FlakeRule = FlakeRule()) -> Board:
    """The board from ``rows``: every stored row, or those of first_loaded_night() on."""
    nights = list(nights)
    shown = nights[-shown_nights:] if shown_nights > 0 else []
    first_shown = shown[0].index if shown else len(nights)
    column = {night.index: i for i, night in enumerate(shown)}
    series = series_by_key(rows)
    shown_rows = [row for row in rows if row.night >= first_shown]
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
                                  last, history))
        platforms.append(PlatformBoard(platform, accelerator, latest, lines,
                                       _durations(shown_rows, platform, shown)))
    pairs = [ParityBoard(a, b, parity(shown_rows, a, b)) for a, b in _parity_pairs(platforms)]
    return Board(nights, shown, platforms, pairs)


def unresolved_first_bad(board: Board, loaded_from: int) -> list[Key]:
    """Series broken through the whole loaded window: their last good run lies further back."""
    if loaded_from <= 0:
        return []
    return [(line.case_id, line.platform) for platform in board.platforms
            for line in platform.lines
            if line.first_bad is not None and line.first_bad.last_good is None]


def resolve_first_bad(board: Board, older: Mapping[Key, Sequence[Row]]) -> None:
    """Answer first-bad again for the series given their stored past (rows before the window)."""
    for platform in board.platforms:
        for line in platform.lines:
            past = older.get((line.case_id, line.platform))
            if past:
                line.first_bad = first_bad([*past, *line.history])
