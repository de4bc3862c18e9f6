"""Plain-text tables for the terminal."""

from __future__ import annotations

from harness.results import Result


def run_table(results: list[Result]) -> str:
    rows = [("job", "status", "class", "startup", "requests", "message")]
    for r in results:
        rows.append((r.job_id, r.status, r.failure_class or "-",
                     _seconds(r.timings.startup_s), _seconds(r.timings.requests_s),
                     (r.message or "")[:80]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
             for row in rows]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
