"""[The baseline: harness/history/publish.py as it was before issue 14 (commit b00817f), kept callable
for benchmarks/bench_history.py to measure today's implementation against.]

From the store to the page: load, ask the questions, render (the one place that does I/O)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.history.board import DEFAULT_NIGHTS, Board, build_board
from legacy_history.dashboard_v1 import render
from harness.history.queries import FlakeRule
from legacy_history.store_v1 import changed_requests, load_details, load_nights, load_rows


def board_from_store(conn: sqlite3.Connection, shown_nights: int = DEFAULT_NIGHTS,
                     rule: FlakeRule = FlakeRule()) -> Board:
    nights = load_nights(conn)
    return build_board(nights, load_rows(conn, nights), shown_nights, rule)


def _outside_grid_ids(board: Board) -> list[int]:
    """Results the page names that may lie before the shown nights: the first bad runs."""
    return sorted(line.first_bad.first_bad.result_id for platform in board.platforms
                  for line in platform.lines if line.first_bad is not None)


def page_from_store(conn: sqlite3.Connection, out_path: Path,
                    shown_nights: int = DEFAULT_NIGHTS, generated_at: str | None = None
                    ) -> tuple[str, Board]:
    conn.execute("BEGIN")  # one read transaction: an ingest committing meanwhile is not seen
    try:
        board = board_from_store(conn, shown_nights)
        details = load_details(conn, [night.run_id for night in board.shown],
                               _outside_grid_ids(board))
        first_shown = board.shown[0].index if board.shown else len(board.nights)
        drift_requests = {}
        for platform in board.platforms:
            for line in platform.lines:
                for drift in line.drifts:
                    if drift.after.night >= first_shown:
                        key = (drift.before.result_id, drift.after.result_id)
                        drift_requests[key] = changed_requests(conn, *key)
    finally:
        conn.execute("COMMIT")
    return render(board, details, Path(out_path), drift_requests, generated_at), board
