"""JUnit XML from one ``Comparison``: one testcase per case x platform (Buildkite Test Engine).

``classname`` is ``harness.<platform>`` and ``name`` the case id: both come from names only, so
Test Engine follows the same test across builds. A candidate's testcase carries the comparison's
verdict (a regression or divergence is a failure, an infrastructure problem or missing result an
error, an expected failure a skip); a baseline of the same run carries its own result. A baseline
read from another run (last night's) belongs to that run's report and is not repeated here.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from harness.compare.explain import output_lines, reference_line, strip_ansi
from harness.compare.model import CaseComparison, Comparison, PairComparison
from harness.compare.verdicts import VERDICT_EXIT, Outcome, Verdict
from harness.outcomes import EXIT_FAILED
from harness.results import Result, not_applicable, not_decisive, status_label

# Characters XML 1.0 cannot hold at all (ANSI escapes in logs, NUL): dropped, or the file breaks.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_LIMIT = 64_000

# Every verdict that makes the build red is a JUnit failure (one rule: VERDICT_EXIT).
_FAILURE = {verdict for verdict, code in VERDICT_EXIT.items() if code == EXIT_FAILED}
_ERROR = {Verdict.INFRA, Verdict.MISSING, Verdict.CORRUPT}
_SKIP = {Verdict.XFAIL, Verdict.SKIPPED, Verdict.QUARANTINED}


def clean(text: str, limit: int = _TEXT_LIMIT) -> str:
    text = _NOT_XML.sub("", strip_ansi(str(text)))
    return text if len(text) <= limit else text[: limit - 20] + "\n... (truncated)"


def classname(platform: str) -> str:
    return f"harness.{platform}"


def _elapsed(result: Result | None) -> str:
    total = result.timings.total_s if result is not None else None
    return f"{total or 0.0:.3f}"


def _candidate_outcome(case: CaseComparison, pair: PairComparison) -> tuple[str, str, str, str]:
    """(kind, type, message, text): kind is failure | error | skipped | passed."""
    verdict = case.verdict
    lines = [case.detail]
    names = (pair.baseline.platform, pair.candidate.platform)
    if case.outputs is not None:
        lines += output_lines(case.outputs, names)
    if case.reference is not None:
        lines.append(reference_line(case.reference, pair))
    if case.nodes is not None:  # vllm_tests: the upstream nodes not at parity, by verdict
        from harness.report.nodes import node_lines

        lines += node_lines(case.nodes)[1:]
    result = case.candidate
    if result is not None and result.reproduce and verdict in _FAILURE | _ERROR:
        lines.append(f"reproduce: {result.reproduce}")
    if result is not None and result.log.tail and verdict in _FAILURE | _ERROR:
        lines += ["", "log tail:", result.log.tail]
    text = "\n".join(lines)
    if verdict in _FAILURE:
        return "failure", str(verdict), case.detail, text
    if verdict in _ERROR or (verdict is Verdict.NEW and case.candidate_outcome is Outcome.INFRA):
        return "error", str(verdict), case.detail, text
    if verdict in _SKIP:
        return "skipped", str(verdict), case.detail, ""
    return "passed", str(verdict), case.detail, ""


def _own_outcome(result: Result | None, problem_text: str) -> tuple[str, str, str, str]:
    if result is None:
        return "error", "missing-result", problem_text, problem_text
    message = result.message or result.status
    text = "\n".join(p for p in (message, f"reproduce: {result.reproduce}" if result.reproduce
                                 else "", result.log.tail) if p)
    if result.status == "failed" or (result.status == "xpassed" and result.expect.strict):
        return "failure", result.failure_class or result.status, message, text
    if result.status == "error":
        return "error", result.failure_class or "error", message, text
    if result.status in ("skipped", "xfailed"):
        return "skipped", result.status, message, ""
    return "passed", result.status, "", ""


def _testcase(suite: ET.Element, platform: str, case_id: str, result: Result | None,
              outcome: tuple[str, str, str, str], quarantine=None) -> str:
    kind, kind_type, message, text = outcome
    element = ET.SubElement(suite, "testcase", classname=classname(platform), name=case_id,
                            time=_elapsed(result))
    if quarantine is not None:  # harness.spec.quarantine: the entry, active or expired
        properties = ET.SubElement(element, "properties")
        for name, value in (("quarantine:link", quarantine.link),
                            ("quarantine:until", quarantine.until.isoformat())):
            ET.SubElement(properties, "property", name=name, value=clean(value, 2000))
    if result is not None and not_applicable(result):
        properties = element.find("properties")
        if properties is None:
            properties = ET.SubElement(element, "properties")
        for check in not_applicable(result):
            ET.SubElement(properties, "property", name=f"not-applicable:{check.name}",
                          value=clean(check.message + (" [decisive]" if check.decisive else ""),
                                      2000))
        if kind == "passed" and not_decisive(result.checks):
            # Not a plain pass: what the case exists to prove did not run on this platform.
            kind, message = "skipped", f"{status_label(result)}: {result.message}"
    if kind != "passed":
        child = ET.SubElement(element, kind, message=clean(message, 2000))
        if kind != "skipped":
            child.set("type", kind_type)
            child.text = clean(text)
    return kind


def render_junit(comparison: Comparison) -> str:
    rows: dict[tuple[str, str], tuple[Result | None, tuple[str, str, str, str]]] = {}
    quarantined: dict[tuple[str, str], object] = {}
    for pair in comparison.pairs:
        same_run = pair.baseline.run_dir == pair.candidate.run_dir
        for case in pair.cases:
            if same_run:
                problem = case.baseline_problem
                key = (pair.baseline.platform, case.case_id)
                if case.baseline is not None or (problem and problem.problem != "missing"):
                    text = f"{problem.path}: {problem.problem}" if problem else ""
                    rows.setdefault(key, (case.baseline, _own_outcome(case.baseline, text)))
            key = (pair.candidate.platform, case.case_id)
            rows.setdefault(key, (case.candidate, _candidate_outcome(case, pair)))
            if case.quarantine is not None:
                quarantined.setdefault(key, case.quarantine)
    root = ET.Element("testsuites", name="harness compare")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for platform in sorted({p for p, _ in rows}):
        suite = ET.SubElement(root, "testsuite", name=classname(platform))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for (p, case_id), (result, outcome) in sorted(rows.items()):
            if p != platform:
                continue
            kind = _testcase(suite, platform, case_id, result, outcome,
                             quarantined.get((p, case_id)))
            counts["tests"] += 1
            if kind != "passed":
                counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
