"""Plain-text tables for the terminal."""

from __future__ import annotations

from harness.results import Result, not_applicable_line, status_label


def run_table(results: list[Result]) -> str:
    rows = [("job", "status", "class", "startup", "requests", "message")]
    for r in results:
        rows.append((r.job_id, status_label(r), r.failure_class or "-",
                     _seconds(r.timings.startup_s), _seconds(r.timings.requests_s),
                     (r.message or "")[:80]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
             for row in rows]
    lines += [f"not applicable on {r.platform}: {r.job_id}: {not_applicable_line(r)}"
              for r in results if not_applicable_line(r)]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def comparison_table(comparison) -> str:
    """One table per compared pair (baseline vs candidate), then what needs a closer look."""
    from harness.compare.explain import (counts_line, output_lines, pair_title, reference_line,
                                         side_status)

    blocks = []
    for pair in comparison.pairs:
        b, c = pair.baseline.platform, pair.candidate.platform
        if b == c:
            b, c = f"{b}@{pair.baseline.run_id}", f"{c}@{pair.candidate.run_id}"
        rows = [("case", b, c, "verdict", "detail")]
        for case in pair.cases:
            rows.append((case.case_id, side_status(case, "baseline"),
                         side_status(case, "candidate"), str(case.verdict), case.detail[:120]))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines = [pair_title(pair)]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
                  for row in rows]
        lines.append(f"summary: {counts_line(pair)}")
        for case in pair.cases:
            extra = output_lines(case.outputs, (b, c)) if case.outputs and not case.outputs.ok \
                else []
            extra += [f"not applicable on {name}: {not_applicable_line(result)}"
                      for name, result in ((b, case.baseline), (c, case.candidate))
                      if result is not None and not_applicable_line(result)]
            if case.reference is not None:
                extra.append(reference_line(case.reference, pair))
            if case.nodes is not None:  # vllm_tests: the non-parity nodes, by verdict
                from harness.report.nodes import node_lines

                extra += node_lines(case.nodes)[1:]
            if extra:
                lines.append(f"{case.case_id}:")
                lines += ["  " + line for line in extra]
        if pair.environment:
            lines.append("environment differences:")
            lines += [f"  {d.key}: {', '.join(d.baseline)} -> {', '.join(d.candidate)}"
                      for d in pair.environment]
        blocks.append("\n".join(lines))
    blocks += [f"note: {note}" for note in comparison.notes]
    return "\n\n".join(blocks)
