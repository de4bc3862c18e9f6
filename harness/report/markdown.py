"""Markdown for a Buildkite annotation (CommonMark + GFM tables), from one ``Comparison``.

Every piece of text that comes from a result (messages, tokens, log tails) is escaped: HTML's
``& < >`` become entities and Markdown punctuation is backslash-escaped, so a result can neither
inject HTML nor reshape the document; log tails go into fenced code blocks, whose content is
literal. The only HTML is the ``<details>`` wrapper this module writes itself.

Buildkite refuses annotation bodies over 1 MiB: blocks are added most important first (tables,
then failure details, then environment, then log tails) and what does not fit is left out with
a note that says so.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from harness.compare.explain import (counts_line, output_lines, pair_title, reference_line,
                                     side_status)
from harness.compare.model import CaseComparison, Comparison, PairComparison
from harness.compare.verdicts import Outcome, Verdict
from harness.outcomes import EXIT_CODES, EXIT_OK
from harness.report.mdtext import (code_block, code_span, escape, link,  # noqa: F401 (re-exported)
                                   safe_link)
from harness.signatures.triage_render import comparison_markdown
from harness.results import (Result, not_applicable, not_applicable_line, not_decisive,
                             status_label)

MAX_BYTES = 1024 * 1024  # Buildkite's limit for one annotation body
_NOTE_RESERVE = 512  # room kept for the truncation note
_FAILING = (Outcome.FAIL, Outcome.INFRA, Outcome.XPASS_STRICT, Outcome.MISSING, Outcome.CORRUPT)


@dataclass(frozen=True)
class LinkStyle:
    """Where log links point: paths relative to the Markdown file, or Buildkite artifacts.

    In a Buildkite build, ``artifact://PATH`` in an annotation links the artifact uploaded under
    PATH (paths relative to the directory the upload ran in, ``artifact_root``), and
    ``BUILD_URL#JOB_ID`` opens the job that produced a result.
    """

    relative_to: Path = Path(".")
    build_url: str | None = None
    artifact_root: Path = Path(".")

    @classmethod
    def from_env(cls, relative_to: Path, environ: dict[str, str] | None = None) -> "LinkStyle":
        environ = os.environ if environ is None else environ
        return cls(relative_to=relative_to, build_url=environ.get("BUILDKITE_BUILD_URL") or None,
                   artifact_root=Path.cwd())

    def log_url(self, log_path: Path) -> str:
        if self.build_url:
            rel = os.path.relpath(log_path.resolve(), self.artifact_root.resolve())
            return "artifact://" + Path(rel).as_posix()
        return Path(os.path.relpath(log_path.resolve(), self.relative_to.resolve())).as_posix()

    def job_url(self, result: Result) -> str | None:
        job = (result.fingerprint.get("buildkite") or {}).get("job_id")
        return f"{self.build_url}#{job}" if self.build_url and job else None


def _log_path(side_dir: Path, result: Result) -> Path | None:
    return side_dir / result.log.path if result.log.path else None


def _table(pair: PairComparison) -> list[str]:
    b, c = pair.baseline.platform, pair.candidate.platform
    if b == c:
        b, c = pair.baseline.label, pair.candidate.label
    rows = [f"| case | {escape(b)} | {escape(c)} | verdict | detail |",
            "| --- | --- | --- | --- | --- |"]
    ordered = sorted(pair.cases, key=lambda case: (case.exit_code == EXIT_OK, case.case_id))
    for case in ordered:
        verdict = str(case.verdict)
        if case.exit_code != EXIT_OK:
            verdict = f"**{verdict}**"
        detail = case.detail if len(case.detail) <= 300 else case.detail[:297] + "..."
        rows.append(f"| {escape(case.case_id)} | {side_status(case, 'baseline')} | "
                    f"{side_status(case, 'candidate')} | {verdict} | {escape(detail)} |")
    return rows


def _needs_detail(case: CaseComparison) -> bool:
    if any(r is not None and not_applicable(r) for r in (case.baseline, case.candidate)):
        return True  # what did not run is shown as not run
    if case.nodes is not None and case.nodes.rows:
        return True  # vllm_tests: nodes that are not at parity are listed
    if case.verdict in (Verdict.PARITY, Verdict.SKIPPED, Verdict.NEW):
        return bool(case.outputs and any(r.divergence for r in case.outputs.requests))
    return True


def _detail(case: CaseComparison, pair: PairComparison, links: LinkStyle) -> str:
    b, c = pair.baseline, pair.candidate
    names = (b.platform, c.platform) if b.platform != c.platform else (b.label, c.label)
    lines = [f"#### {escape(case.case_id)}: {escape(str(case.verdict))}", ""]
    if case.quarantine is not None:  # harness.spec.quarantine: its link, clickable
        q = case.quarantine
        state = "expired" if case.quarantine_expired else "quarantined"
        lines.append(f"- {state} on {escape(c.platform)} until {q.until.isoformat()}: "
                     f"{safe_link(q.link)}" + (f" ({escape(q.reason)})" if q.reason else ""))
    if case.verdict not in (Verdict.MISSING, Verdict.CORRUPT):  # those list each file below
        lines.append(f"- {escape(case.detail)}")
    for name, side, result, problem, outcome in (
            (names[0], b, case.baseline, case.baseline_problem, case.baseline_outcome),
            (names[1], c, case.candidate, case.candidate_problem, case.candidate_outcome)):
        if problem is not None:
            lines.append(f"- **{escape(name)}**: {escape(problem.path)}: {escape(problem.problem)}")
            continue
        if result is None:
            continue
        if result.message and (outcome is not Outcome.PASS or not_decisive(result.checks)):
            lines.append(f"- **{escape(name)}** ({escape(status_label(result))}): "
                         f"{escape(result.message[:2000])}")
        if not_applicable_line(result):
            lines.append(f"- **{escape(name)}** not applicable: "
                         f"{escape(not_applicable_line(result))}")
        if result.expect.outcome == "xfail":
            expect = f"- **{escape(name)}** expected to fail: {escape(result.expect.reason)}"
            if result.expect.link:
                expect += " (" + safe_link(result.expect.link) + ")"
            lines.append(expect)
        if outcome in _FAILING and result.reproduce:
            lines.append(f"- reproduce on {escape(name)}: {code_span(result.reproduce)}")
        refs = []
        log = _log_path(side.run_dir / side.platform, result)
        if log is not None:
            refs.append(link(f"{name} log", links.log_url(log)))
        job = links.job_url(result)
        if job:
            refs.append(link(f"{name} job", job))
        if refs:
            lines.append("- " + " · ".join(refs))
    bisect = _bisect_line(case, pair)
    if bisect:
        lines.append(f"- find the first bad image: {code_span(bisect)}")
    if case.reference is not None:
        lines.append(f"- {escape(reference_line(case.reference, pair))}")
    if case.nodes is not None:
        from harness.report.nodes import node_lines

        listed = node_lines(case.nodes)
        if len(listed) > 1:
            lines += ["", "Upstream test nodes by verdict:", "", code_block("\n".join(listed))]
    if case.outputs is not None:
        detail = output_lines(case.outputs, names)
        if detail:
            lines += ["", "First divergence per request:", "", code_block("\n".join(detail))]
    return "\n".join(lines)


def _bisect_line(case: CaseComparison, pair: PairComparison) -> str | None:
    """For a regression between two runs of one platform on different images: the
    `harness bisect` command that searches the images between them."""
    from harness.bisect_command import range_images, suggest

    if (case.verdict is not Verdict.REGRESSION or case.baseline is None
            or case.candidate is None or pair.baseline.platform != pair.candidate.platform):
        return None
    images = range_images(case.baseline.fingerprint, case.candidate.fingerprint)
    return suggest(case.case_id, pair.candidate.platform, *images) if images else None


def _tails(case: CaseComparison, pair: PairComparison) -> str:
    blocks = []
    for name, result, outcome in ((pair.baseline.platform, case.baseline, case.baseline_outcome),
                                  (pair.candidate.platform, case.candidate,
                                   case.candidate_outcome)):
        if result is None or outcome not in _FAILING or not result.log.tail:
            continue
        # Inside raw HTML Markdown is not interpreted: HTML escaping, not backslashes.
        blocks.append(f"<details><summary>{html.escape(case.case_id)} on {html.escape(name)}: "
                      f"log tail</summary>\n\n{code_block(result.log.tail)}\n\n</details>")
    return "\n\n".join(blocks)


def _environment(pair: PairComparison) -> str:
    if not pair.environment:
        return ""
    rows = ["#### Environment differences", "",
            f"| | {escape(pair.baseline.label)} | {escape(pair.candidate.label)} |",
            "| --- | --- | --- |"]
    rows += [f"| {escape(d.key)} | {escape(', '.join(d.baseline))} | "
             f"{escape(', '.join(d.candidate))} |" for d in pair.environment]
    return "\n".join(rows)


def render_markdown(comparison: Comparison, links: LinkStyle | None = None,
                    max_bytes: int = MAX_BYTES) -> str:
    links = links or LinkStyle()
    # (priority, document order, text): lower priority numbers are kept first.
    blocks: list[tuple[int, int, str]] = []
    order = 0

    def add(priority: int, text: str) -> None:
        nonlocal order
        if text:
            blocks.append((priority, order, text))
            order += 1

    exit_code = comparison.exit_code
    add(0, f"### harness compare: exit {exit_code} ({EXIT_CODES.get(exit_code, 'error')})")
    for note in comparison.notes:
        add(0, f"- {escape(note)}")
    for pair in comparison.pairs:
        add(0, f"#### {escape(pair_title(pair))}\n\n{escape(counts_line(pair))}")
        add(1, "\n".join(_table(pair)))
        for case in pair.cases:
            if _needs_detail(case):
                add(2, _detail(case, pair, links))
        add(3, _environment(pair))
        for case in pair.cases:
            if _needs_detail(case):
                add(4, _tails(case, pair))
    add(2, comparison_markdown(comparison))  # failures grouped by signature (harness.signatures)
    return _fit(blocks, max_bytes)


def _fit(blocks: list[tuple[int, int, str]], max_bytes: int) -> str:
    budget = max_bytes - _NOTE_RESERVE
    kept, omitted, used = [], 0, 0
    for priority, order, text in sorted(blocks):
        size = len(text.encode()) + 2
        if used + size <= budget:
            kept.append((order, text))
            used += size
        elif priority == 1:  # a table too big on its own: keep the rows that fit
            text, cut = _cut_table(text, budget - used)
            kept.append((order, text))
            used += len(text.encode()) + 2
            omitted += cut
        else:
            omitted += 1
    body = "\n\n".join(text for _, text in sorted(kept))
    if omitted:
        body += (f"\n\n_Truncated to stay under {max_bytes // 1024} KiB: {omitted} section(s) or "
                 "row(s) left out. The JSON summary and the result files hold everything._")
    return body + "\n"


def _cut_table(table: str, room: int) -> tuple[str, int]:
    lines = table.split("\n")
    kept, used = lines[:2], len("\n".join(lines[:2]).encode())
    for line in lines[2:]:
        if used + len(line.encode()) + 1 > room:
            break
        kept.append(line)
        used += len(line.encode()) + 1
    return "\n".join(kept), len(lines) - len(kept)
