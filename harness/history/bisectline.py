"""The auto-bisect's line beside a newly broken case on the dashboard: running, what it found
(first bad, last good, the likely layer and the components that changed), or why it was not
started. Pure: records (harness.history.bisects) in, escaped HTML out."""

from __future__ import annotations

import json
from typing import Mapping, Sequence

from harness.stack import LABELS
from harness.history.bisects import BisectRecord
from harness.history.html import Markup, html, join


def pick(records: Sequence[BisectRecord], since_night: int,
         night_index: Mapping[str, int]) -> BisectRecord | None:
    """The record to show for a case broken since ``since_night``: the latest bisect planned
    since then, else the latest refusal since then; None when there is neither."""
    mine = [r for r in records if night_index.get(r.run_id, -1) >= since_night]
    started = [r for r in mine if r.status != "refused"]
    return (started or mine or [None])[-1]


def _result(record: BisectRecord) -> dict:
    try:
        data = json.loads(record.result_json or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _ref(image: object) -> str:
    return str(image.get("ref", "")) if isinstance(image, dict) else ""


def changes_text(components: object) -> str:
    changed = components.get("changed") if isinstance(components, dict) else None
    return ", ".join(f"{LABELS.get(str(c.get('component')), c.get('component'))} "
                     f"{c.get('before') or '(absent)'} \u2192 {c.get('after') or '(absent)'}"
                     for c in changed or [] if isinstance(c, dict))


def line(record: BisectRecord | None) -> Markup:
    if record is None:
        return Markup("")
    if record.status == "refused":
        return html('<div class="bisect">not auto-bisected: {}</div>', record.reason)
    if record.status == "running":
        return html('<div class="bisect">auto-bisect running since {} over {}..{} (at most {} '
                    'engine runs): <code>{}</code></div>', record.planned_at, record.good_ref,
                    record.bad_ref, record.max_runs if record.max_runs is not None else "?",
                    record.bisect_id)
    data = _result(record)
    if record.status != "found":
        return html('<div class="bisect">auto-bisect {}: {}</div>', record.status, record.reason)
    components = data.get("components") or {}
    layer = components.get("layer", "") if isinstance(components, dict) else ""
    commits = data.get("vllm_commits") or {}
    url = commits.get("compare_url") if isinstance(commits, dict) else None
    parts = [html("auto-bisect: first bad <code>{}</code>, last good <code>{}</code>",
                  _ref(data.get("first_bad")), _ref(data.get("last_good")))]
    if layer:
        parts.append(html(" \u2014 <b>{}</b>", layer))
    changed = changes_text(components)
    if changed:
        parts.append(html("; changed: {}", changed))
    if isinstance(url, str) and url.startswith("https://"):
        parts.append(html(' (<a href="{}">vLLM commits</a>)', url))
    return html('<div class="bisect">{}</div>', join(parts))


def flag(record: BisectRecord | None) -> Markup:
    """A short mark for the grid's row header."""
    if record is None:
        return Markup("")
    if record.status == "found":
        components = _result(record).get("components") or {}
        layer = components.get("layer", "found") if isinstance(components, dict) else "found"
        return html('<span class="flag new" title="auto-bisect">bisect: {}</span>', layer)
    word = "not bisected" if record.status == "refused" else f"bisect {record.status}"
    return html('<span class="flag" title="{}">{}</span>', record.reason, word)
