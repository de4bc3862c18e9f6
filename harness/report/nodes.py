"""The per-node part of the reports for vllm_tests cases: nodes by verdict, and the skip report.

Every node is counted; the nodes of every verdict but ``parity`` are listed (up to ``limit`` per
verdict, then how many more), so a report of 75,000 passing nodes stays a few lines.
"""

from __future__ import annotations

from typing import Any

from harness.compare.nodes import ORDER, NodeDiff, NodeVerdict, skip_report

LIST_LIMIT = 50


def node_lines(nodes: NodeDiff, limit: int = LIST_LIMIT) -> list[str]:
    counts = nodes.counts()
    lines = ["nodes: " + ", ".join(f"{n} {v}" for v, n in counts.items())]
    for verdict in ORDER:
        if verdict is NodeVerdict.PARITY or verdict.value not in counts:
            continue
        rows = nodes.by_verdict(verdict)
        lines.append(f"{verdict} ({len(rows)}):")
        lines += [f"  {row.node_id}" + (f"  {row.detail}" if row.detail else "")
                  for row in rows[:limit]]
        if len(rows) > limit:
            lines.append(f"  ... and {len(rows) - limit} more")
    return lines


def node_summary(nodes: NodeDiff | None, limit: int = LIST_LIMIT) -> dict[str, Any] | None:
    """The JSON summary's ``nodes``: counts, and the non-parity nodes (up to ``limit`` each)."""
    if nodes is None:
        return None
    listed: dict[str, list[dict[str, str]]] = {}
    for verdict in ORDER:
        if verdict is NodeVerdict.PARITY:
            continue
        rows = nodes.by_verdict(verdict)[:limit]
        if rows:
            listed[verdict.value] = [{"node_id": r.node_id, "detail": r.detail} for r in rows]
    return {"counts": nodes.counts(), "nodes": listed}


def skips_text(comparison) -> str:
    """`harness compare --skips`: per pair, what runs on the baseline and is skipped on the
    candidate, grouped by the skip reason (the coverage the candidate does not have)."""
    blocks = []
    for pair in comparison.pairs:
        b, c = pair.baseline.platform, pair.candidate.platform
        lines = [f"runs on {b}, skipped on {c}:"]
        total = 0
        for case in pair.cases:
            if case.nodes is None:
                continue
            for reason, node_ids in skip_report(case.nodes).items():
                total += len(node_ids)
                lines.append(f"  {case.case_id}: {reason} ({len(node_ids)} test"
                             f"{'s' if len(node_ids) != 1 else ''})")
                lines += [f"    {nid}" for nid in node_ids]
        lines.append(f"  {total} test(s) skipped on {c} only" if total else
                     f"  none: every test that runs on {b} runs on {c}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
