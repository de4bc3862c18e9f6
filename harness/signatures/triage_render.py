"""Triage groups as a terminal table, Markdown (the Buildkite annotation), JSON and HTML (the
dashboard). Every renderer shows the same columns; HTML and Markdown escape what they show."""

from __future__ import annotations

import json

from harness.history.html import Markup, html, join
from harness.signatures.triage import Group

COLUMNS = ("signature", "class", "first seen", "last seen", "nights", "jobs", "platforms",
           "nodes", "vendor", "verdict")
MAX_LIST = 4  # names shown per cell before "+N"


def _names(values: list[str]) -> str:
    shown = ", ".join(values[:MAX_LIST])
    return shown + (f" +{len(values) - MAX_LIST}" if len(values) > MAX_LIST else "") or "-"


def signature_label(group: Group) -> str:
    return f"{group.rule} [{group.key}]" if group.key else group.rule


def cells(group: Group) -> list[str]:
    return [signature_label(group), group.failure_class or "-", group.first_seen,
            group.last_seen, str(group.nights), str(group.jobs), _names(group.platforms),
            _names(group.nodes), group.vendor, group.verdict]


def terminal(groups: list[Group], width: int = 60) -> str:
    if not groups:
        return "no failure signatures"
    rows = [list(COLUMNS)] + [[c if len(c) <= width else c[:width - 1] + "\u2026"
                               for c in cells(g)] for g in groups]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md(text: str) -> str:
    """Table-cell text: no markup, no pipes, no line breaks."""
    from harness.report.mdtext import escape

    return escape(text)  # one line, pipes and markup escaped


def _first_md(group: Group) -> str:
    """The signature, linked to its rule's known issue when it has one."""
    from harness.report.mdtext import link

    if group.link.startswith("https://"):
        return link(signature_label(group), group.link)
    return _md(signature_label(group))


def markdown(groups: list[Group], title: str = "Failure signatures") -> str:
    if not groups:
        return f"### {title}\n\nNo failure signatures.\n"
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join([_first_md(g), *map(_md, cells(g)[1:])]) + " |\n"
                   for g in groups)
    return f"### {title}\n\n{head}{body}"


def as_json(groups: list[Group]) -> str:
    return json.dumps({"signatures": [g.as_dict() for g in groups]}, indent=2) + "\n"


def html_table(groups: list[Group]) -> Markup:
    if not groups:
        return html('<section id="signatures"><h2>Failure signatures</h2>'
                    '<p>No failure signatures in the shown nights.</p></section>\n')
    heads = join(html("<th>{}</th>", c) for c in COLUMNS)
    rows = []
    for g in groups:
        klass = "node" if g.node_local else ("new" if g.new_tonight else "")
        row_cells = cells(g)
        first = html('<td title="{line}"><code>{label}</code></td>', line=g.line,
                     label=row_cells[0])
        if g.link:
            first = html('<td title="{line}"><a href="{href}"><code>{label}</code></a></td>',
                         line=g.line, href=g.link if g.link.startswith("https://") else "#",
                         label=row_cells[0])
        rows.append(html('<tr class="{k}">{first}{rest}</tr>', k=klass, first=first,
                         rest=join(html("<td>{}</td>", c) for c in row_cells[1:])))
    return html('<section id="signatures"><h2>Failure signatures</h2>'
                '<table class="signatures"><thead><tr>{heads}</tr></thead>'
                '<tbody>{rows}</tbody></table></section>\n', heads=heads, rows=join(rows))


def comparison_markdown(comparison) -> str:
    """The annotation's signature table: the failures of the compared runs (both sides of
    every pair, each result once), grouped; "" when none failed with a signature."""
    from harness.signatures.rulebook import rule_links
    from harness.signatures.triage import triage
    from harness.signatures.triage_read import from_views

    by_run: dict[str, dict[tuple[str, str], object]] = {}
    for pair in comparison.pairs:
        for side in (pair.baseline, pair.candidate):
            for result in side.results.values():
                by_run.setdefault(result.run_id, {})[(result.platform, result.case_id)] = result
    runs = sorted(by_run.items(), key=lambda kv: (min(
        (r.started_at for r in kv[1].values() if r.started_at), default=""), kv[0]))
    groups = triage(*from_views([(run, list(results.values())) for run, results in runs]),
                    rule_links())
    return markdown(groups) if groups else ""
