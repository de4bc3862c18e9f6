"""The dashboard's per-node section for vllm_tests cases (harness.history.nodes): every upstream
test node not passing now, per platform, with the first night of its state (its first bad night
when it fails) and how often it changed. Passing nodes have no row in the store and none here."""

from __future__ import annotations

from harness.history.html import Markup, html, join
from harness.history.nodes import NodeLine

LIMIT = 1000  # nodes listed; the count says how many more
CLASS = {"failed": "failed", "error": "error", "skipped": "skipped", "xfailed": "xfailed"}


def node_section(lines: list[NodeLine], limit: int = LIMIT) -> Markup:
    if not lines:
        return Markup("")
    bad = sum(1 for n in lines if n.outcome in ("failed", "error"))
    rows = join(html(
        "<tr><td>{case}</td><td><code>{node}</code></td><td>{platform}</td>"
        '<td class="{cls}">{outcome}</td><td>{why}</td><td>{since}</td><td>{changes}</td></tr>\n',
        case=n.case_id, node=n.node_id, platform=n.platform, cls=CLASS.get(n.outcome, ""),
        outcome=n.outcome, why=(f"{n.exception}: {n.message}" if n.exception and
                                not n.message.startswith(n.exception) else n.message) or "-",
        since=n.since_run_id, changes=n.changes) for n in lines[:limit])
    more = html("<p>... and {} more</p>", len(lines) - limit) if len(lines) > limit else ""
    return html(
        '<section id="test-nodes"><h2>vLLM\'s own tests not passing</h2>'
        '<p class="meta">{n} node(s) not passing now ({bad} failing); passing nodes are not '
        "stored per night. <i>since</i>: the first night of the current state (the first bad "
        "night of a failure).</p>\n<table class=\"nodes\"><tr><th>case</th><th>node</th>"
        "<th>platform</th><th>state</th><th>why</th><th>since</th><th>changes</th></tr>\n"
        "{rows}</table>{more}</section>\n", n=len(lines), bad=bad, rows=rows, more=more)
