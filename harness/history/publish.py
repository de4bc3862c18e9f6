"""From the store to the page: load, ask the questions, render (the one place that does I/O).

Only what the page shows is read: the nights, the results of the shown nights and a lookback
window before them (harness.history.board), the past of the few series broken through that whole
window, and the details (message, log) of the cells and lists that show them.
"""

from __future__ import annotations

from pathlib import Path

from harness.history.nodes import load_node_lines
from harness.history.board import (DEFAULT_NIGHTS, Board, build_board, first_loaded_night,
                                   resolve_first_bad, unresolved_first_bad)
from harness.history.dashboard import render, rich_cell
from harness.history.bisects import load_records
from harness.history.db import Connection
from harness.history.queries import FlakeRule
from harness.history.storeread import (changed_requests, load_details, load_nights,
                                       load_rows, load_series)
from harness.results import cycle_collection_paused
from harness.signatures.rulebook import rule_links
from harness.signatures.triage import triage
from harness.signatures.triage_read import read_signatures
from harness.signatures.triage_render import html_table


def board_from_store(conn: Connection, shown_nights: int = DEFAULT_NIGHTS,
                     rule: FlakeRule = FlakeRule()) -> Board:
    nights = load_nights(conn)
    start = first_loaded_night(nights, shown_nights, rule)
    board = build_board(nights, load_rows(conn, nights, start), shown_nights, rule)
    keys = unresolved_first_bad(board, start)
    if keys:
        resolve_first_bad(board, load_series(conn, nights, keys, start))
    return board


def detail_ids(board: Board) -> list[int]:
    """Results whose message or log the page shows: rich grid cells, the latest night's broken
    cases, and first bad runs (which may lie before the shown nights)."""
    ids = set()
    for platform in board.platforms:
        for line in platform.lines:
            ids.update(row.result_id for row in line.cells
                       if row is not None and rich_cell(line, row))
            if line.broken_now:
                ids.add(line.last.result_id)
            if line.first_bad is not None:  # and the last good: the bisect range starts there
                ids.update(row.result_id for row in (line.first_bad.first_bad,
                                                     line.first_bad.last_good)
                           if row is not None)
    return sorted(ids)


def page_from_store(conn: Connection, out_path: Path,
                    shown_nights: int = DEFAULT_NIGHTS, generated_at: str | None = None,
                    quarantine: list | None = None) -> tuple[str, Board]:
    # one snapshot: an ingest committing meanwhile is not seen; a hundred thousand rows of
    # small objects: no cycle collection while they are built (harness.results)
    with conn.read(), cycle_collection_paused():
        board = board_from_store(conn, shown_nights)
        details = load_details(conn, detail_ids(board))
        first_shown = board.shown[0].index if board.shown else len(board.nights)
        drift_requests = {}
        for platform in board.platforms:
            for line in platform.lines:
                for drift in line.drifts:
                    if drift.after.night >= first_shown:
                        key = (drift.before.result_id, drift.after.result_id)
                        drift_requests[key] = changed_requests(conn, *key)
        # the failure signatures of the shown nights (harness.signatures.triage)
        signatures = html_table(triage(*read_signatures(conn, len(board.shown)), rule_links()))
        node_lines = load_node_lines(conn)
        broken = {line.case_id for p in board.platforms for line in p.lines if line.broken_now}
        bisects: dict[tuple[str, str], list] = {}
        for record in load_records(conn, broken):
            bisects.setdefault((record.case_id, record.platform), []).append(record)
    return render(board, details, Path(out_path), drift_requests, generated_at,
                  quarantine, signatures, node_lines, bisects), board
