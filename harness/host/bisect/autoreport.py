"""What the nightly's auto-bisect says in its annotation and its plan file. Pure."""

from __future__ import annotations

from typing import Any

from harness.host.bisect.autoplan import Plan, Settings
from harness.report.markdown import code_span, escape

ANNOTATION_CONTEXT = "harness-autobisect"


def plan_markdown(plan: Plan, settings: Settings, run_id: str) -> str:
    out = [f"### harness auto-bisect on {escape(settings.platform)}, {escape(run_id)}", ""]
    if settings.off:
        out += [f"**Off: {escape(settings.off)}.**", ""]
    if plan.bisects:
        out += [f"Started {len(plan.bisects)} bisect(s) (engine runs granted "
                f"{plan.runs_granted} of the night's {plan.budget_runs}); each posts its own "
                "report with the first bad image and what changed:", "",
                "| case | failure | last good | first bad | tags | runs at most | bisect |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {escape(b.case_id)} | {escape(b.signature)} | {code_span(b.good.tag)} | "
                f"{code_span(b.bad.tag)} | {b.candidates} | {b.max_runs} | "
                f"{code_span(b.bisect_id)} |" for b in plan.bisects]
        out.append("")
    if plan.refusals:
        out += ["Not bisected:", ""]
        out += [f"- **{escape(r.case_id)}** ({escape(r.kind)}): {escape(r.reason)}"
                for r in plan.refusals]
        out.append("")
    if not plan.bisects and not plan.refusals:
        out += [f"No case newly broken on {escape(settings.platform)} tonight: nothing to "
                "bisect.", ""]
    return "\n".join(out)


def annotation_style(plan: Plan) -> str:
    return "warning" if plan.refusals and not plan.bisects else "info"


def plan_json(plan: Plan, settings: Settings, run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id, "platform": settings.platform, "off": settings.off,
        "budget_runs": plan.budget_runs, "runs_granted": plan.runs_granted,
        "bisects": [{"bisect_id": b.bisect_id, "case": b.case_id, "signature": b.signature,
                     "good": b.good.tag, "bad": b.bad.tag, "candidates": b.candidates,
                     "max_runs": b.max_runs, "command": b.request.command()}
                    for b in plan.bisects],
        "refusals": [{"case": r.case_id, "kind": r.kind, "reason": r.reason}
                     for r in plan.refusals],
    }
