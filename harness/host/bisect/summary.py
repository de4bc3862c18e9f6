"""The bisect's result as JSON for tools (``<bisect dir>/bisect.json``, ``--json FILE``) and for
the history store's record of it. Pure: the report's Summary in, a dict out."""

from __future__ import annotations

from typing import Any

from harness.host.bisect.report import Summary, commit_range, component_diff
from harness.host.bisect.search import run_counts

JSON_FILE = "bisect.json"
JSON_VERSION = 1


def status_of(summary: Summary) -> str:
    """found | nothing (the ends did not verify) | open (stopped or interrupted: resumable)."""
    done = summary.done
    if done is None:
        return "open"
    return "found" if done.found else "nothing"


def _image(summary: Summary, index: int | None) -> dict[str, Any] | None:
    if index is None:
        return None
    c = summary.state.candidates[index]
    return {"ref": c.ref, "digest": c.digest, "created": c.created, "index": index}


def summary_json(summary: Summary) -> dict[str, Any]:
    s, done = summary.state, summary.done
    counts = run_counts(s.config(), s.runs())
    good, bad, url = commit_range(summary)
    changes = component_diff(summary)
    return {
        "version": JSON_VERSION, "id": s.id, "case": s.case, "platform": s.platform,
        "status": status_of(summary), "headline": summary.headline(),
        "problem": done.problem if done else "",
        "candidates": len(s.candidates), "good": s.good, "bad": s.bad,
        "last_good": _image(summary, done.last_good if done else None),
        "first_bad": _image(summary, done.first_bad if done else None),
        "undecided": [s.candidates[i].ref for i in (done.undecided if done else ())],
        "vllm_commits": {"good": good, "bad": bad, "compare_url": url},
        "components": changes.as_json() if changes is not None else None,
        "engine_runs": counts.total, "bound": counts.bound, "within_bound": counts.within_bound,
        "steps": [{"number": st.number, "purpose": st.purpose, "candidate": st.candidate,
                   "outcome": st.outcome, "reason": st.reason, "result": st.result}
                  for st in s.steps],
        "command": summary.command,
    }
