"""The bisect's report, in the terminal and as Markdown (a Buildkite annotation). Pure.

Last good, first bad, the commit range to read (labels, vLLM versions and digests of both),
every step with its verdict and a link to its result, the skipped candidates and why, and the
engine runs against the bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from harness.host.bisect.search import Done, Next, run_counts, step_bound, verdicts
from harness.host.bisect.state import BisectState, Candidate, Step
from harness.host.bisect.candidates import tag_of
from harness.host.bisect.components import ComponentDiff, diff
from harness.report.mdtext import code_span, escape, link

# Labels that name a build's version or source commit, in the order they are shown.
VERSION_LABELS = ("org.opencontainers.image.version", "org.opencontainers.image.revision",
                  "vllm.version", "vllm.commit", "version", "revision", "vcs-ref")
REVISION_LABELS = ("org.opencontainers.image.revision", "vllm.commit", "vcs-ref", "revision")
SOURCE_LABEL = "org.opencontainers.image.source"
VLLM_REPOSITORY = "https://github.com/vllm-project/vllm"
_COMMIT_TAG = re.compile(r"(?:^|[-_.])([0-9a-f]{7,40})$")
RUN_VERDICT = {"pass": "pass", "fail": "fail", "infra": "skip"}  # one run's word in the report


@dataclass(frozen=True)
class Summary:
    """What the report says, computed once for both renderings."""

    state: BisectState
    decision: Next | Done
    command: str

    @property
    def done(self) -> Done | None:
        return self.decision if isinstance(self.decision, Done) else None

    def headline(self) -> str:
        s, done = self.state, self.done
        if done is None:
            nxt = self.decision
            assert isinstance(nxt, Next)
            return (f"in progress: {len(s.steps)} run(s) so far; next: "
                    f"{s.candidates[nxt.candidate].ref} ({nxt.purpose}). Rerun the same command "
                    "to continue.")
        if done.problem:
            return f"nothing found: {done.problem}"
        first = s.candidates[done.first_bad].ref
        if done.undecided:
            return (f"first bad: {first}, or one of {len(done.undecided)} skipped candidate(s) "
                    "before it")
        return f"first bad: {first}"

    def counts_line(self) -> str:
        s = self.state
        c = run_counts(s.config(), s.runs())
        n = len(s.candidates)
        verdict = "within" if c.within_bound else "OVER"
        return (f"engine runs: {c.total} = {c.end_checks} end check(s) + {c.steps} step(s) + "
                f"{c.confirmations} confirmation(s); bound: ceil(log2({n})) = {step_bound(n)} "
                f"step(s) + {c.confirmations} confirmation(s) + {c.end_checks} end check(s) = "
                f"{c.bound}: {verdict} the bound")

    def step_verdicts(self) -> list[str]:
        return verdicts(self.state.config(), self.state.runs())

    def skipped(self) -> list[tuple[Candidate, str]]:
        """Skipped candidates with the reason of their infrastructure failure."""
        s = self.state
        out = []
        for index, v in enumerate(self.step_verdicts()):
            if v == "skip":
                why = next(st.reason for st in s.steps
                           if st.candidate == index and st.outcome == "infra")
                out.append((s.candidates[index], why))
        return out


def describe(candidate: Candidate, steps: list[Step]) -> str:
    """Labels, vLLM version and digest of one candidate: what to read the range between."""
    parts = [f"{k.rsplit('.', 1)[-1]}={candidate.labels[k]}" for k in VERSION_LABELS
             if k in candidate.labels]
    fp = next((st.fingerprint for st in steps if st.fingerprint), {})
    if fp.get("vllm"):
        parts.append(f"vllm {fp['vllm']}")
    if fp.get("image_digest"):
        parts.append(str(fp["image_digest"]).rsplit("@", 1)[-1][:19])
    if candidate.created:
        parts.append(f"created {candidate.created[:19]}")
    return ", ".join(parts) or "no labels"


def revision(candidate: Candidate) -> str | None:
    for key in REVISION_LABELS:
        if candidate.labels.get(key):
            return candidate.labels[key]
    match = _COMMIT_TAG.search(tag_of(candidate.ref))  # vllm-openai-rocm:nightly-<commit>
    return match.group(1) if match else None


def commit_range(summary: Summary) -> tuple[str | None, str | None, str | None]:
    """(good revision, bad revision, compare URL) when the images say which commits they are."""
    done, s = summary.done, summary.state
    if done is None or done.last_good is None or done.first_bad is None:
        return None, None, None
    good, bad = s.candidates[done.last_good], s.candidates[done.first_bad]
    a, b = revision(good), revision(bad)
    source = bad.labels.get(SOURCE_LABEL, "")
    if not (a and b):  # the images do not say: the vLLM commits their results recorded
        a, b = (str(stack_of(s, i).get("vllm_commit") or "") or None
                for i in (done.last_good, done.first_bad))
    url = None
    if a and b and a != b and source.startswith("https://github.com/"):
        url = f"{source.rstrip('/').removesuffix('.git')}/compare/{a}...{b}"
    elif a and b and a != b:  # vLLM images: the revision is vLLM's
        url = f"{VLLM_REPOSITORY}/compare/{a}...{b}"
    return a, b, url


def stack_of(state: BisectState, index: int) -> dict:
    """The stack versions a run of candidate ``index`` recorded (harness.worker.stack)."""
    return next((dict(st.fingerprint["stack"]) for st in _steps_of(state, index)
                 if isinstance(st.fingerprint.get("stack"), dict)), {})


def component_diff(summary: Summary) -> ComponentDiff | None:
    done, s = summary.done, summary.state
    if done is None or done.problem or done.last_good is None or done.first_bad is None:
        return None
    return diff(stack_of(s, done.last_good) or None, stack_of(s, done.first_bad) or None)


def component_lines(changes: ComponentDiff) -> list[str]:
    """'ROCm: 6.4.1 -> 7.0.0' per changed component (plain text)."""
    return [f"{c.label}: {c.before or '(absent)'} -> {c.after or '(absent)'}"
            for c in changes.changes]


def _steps_of(state: BisectState, index: int) -> list[Step]:
    return [st for st in state.steps if st.candidate == index]


def terminal(summary: Summary) -> str:
    s, done = summary.state, summary.done
    lines = [f"harness bisect {s.case} on {s.platform} ({s.id}): {len(s.candidates)} candidates, "
             f"{s.candidates[0].ref} .. {s.candidates[-1].ref}",
             summary.headline()]
    if done is not None and done.last_good is not None:
        lines.append(f"  last good: {s.candidates[done.last_good].ref} "
                     f"({describe(s.candidates[done.last_good], _steps_of(s, done.last_good))})")
    if done is not None and done.first_bad is not None:
        lines.append(f"  first bad: {s.candidates[done.first_bad].ref} "
                     f"({describe(s.candidates[done.first_bad], _steps_of(s, done.first_bad))})")
    a, b, url = commit_range(summary)
    if a and b:
        lines.append(f"  commits to read: {a}..{b}" + (f"  {url}" if url else ""))
    changes = component_diff(summary)
    if changes is not None:
        lines.append(f"  likely layer: {changes.layer}")
        lines += [f"    changed {line}" for line in component_lines(changes)]
    if done is not None:
        for index in done.undecided:
            lines.append(f"  could also be first bad (skipped): {s.candidates[index].ref}")
        lines += [f"  note: {note}" for note in done.notes]
    lines.append(summary.counts_line())
    lines.append("steps:")
    width = max(len(c.ref) for c in s.candidates)
    for st in s.steps:
        lines.append(f"  {st.number:>2} {st.purpose:<11} {s.candidates[st.candidate].ref:<{width}} "
                     f"{RUN_VERDICT[st.outcome]:<5} {st.duration_s:>6.0f}s  {st.result or st.name}"
                     + (f"  {st.reason}" if st.outcome != "pass" else ""))
    final = summary.step_verdicts()
    lines.append("candidates: " + "  ".join(f"{tag_of(c.ref) or c.ref}={v}"
                                            for c, v in zip(s.candidates, final)))
    for candidate, why in summary.skipped():
        lines.append(f"skipped {candidate.ref}: {why}")
    lines.append(f"rerun or continue: {summary.command}")
    return "\n".join(lines)


def markdown(summary: Summary, link_to: Callable[[str], str]) -> str:
    """``link_to`` maps a path relative to the bisect directory to a URL (artifact or file)."""
    s, done = summary.state, summary.done
    style = "found" if done is not None and done.found else "open"
    out = [f"### harness bisect {escape(s.case)} on {escape(s.platform)}: {escape(style)}", "",
           f"**{escape(summary.headline())}**", ""]
    rows = []
    if done is not None and done.last_good is not None:
        c = s.candidates[done.last_good]
        rows.append(("last good", c, describe(c, _steps_of(s, done.last_good))))
    if done is not None and done.first_bad is not None:
        c = s.candidates[done.first_bad]
        rows.append(("first bad", c, describe(c, _steps_of(s, done.first_bad))))
    if done is not None:
        rows += [("skipped, could be first bad", s.candidates[i],
                  describe(s.candidates[i], _steps_of(s, i))) for i in done.undecided]
    if rows:
        out += ["| | image | labels / versions |", "|---|---|---|"]
        out += [f"| {escape(what)} | {code_span(c.ref)} | {escape(text)} |" for what, c, text in rows]
        out.append("")
    a, b, url = commit_range(summary)
    if a and b:
        out += [f"Commits to read: {code_span(f'{a}..{b}')}"
                + (f" ({link('compare on GitHub', url)})" if url else ""), ""]
    changes = component_diff(summary)
    if changes is not None:
        out += [f"**Likely layer: {escape(changes.layer)}**", ""]
        if changes.changes:
            out += ["| component | last good | first bad |", "|---|---|---|"]
            out += [f"| {escape(c.label)} | {code_span(c.before or '(absent)')} | "
                    f"{code_span(c.after or '(absent)')} |" for c in changes.changes]
            out.append("")
    if done is not None:
        out += [f"- note: {escape(note)}" for note in done.notes]
    out += [escape(summary.counts_line()), "",
            "| # | purpose | candidate | verdict | time | result | why |",
            "|---|---|---|---|---|---|---|"]
    for st in s.steps:
        target = link(st.result, link_to(st.result)) if st.result else escape(st.name)
        why = escape(st.reason) if st.outcome != "pass" else ""
        out.append(f"| {st.number} | {escape(st.purpose)} | {code_span(s.candidates[st.candidate].ref)}"
                   f" | {RUN_VERDICT[st.outcome]} | {st.duration_s:.0f} s | {target} | {why} |")
    skipped = summary.skipped()
    if skipped:
        out += ["", "Skipped candidates (infrastructure, as `git bisect skip`):", ""]
        out += [f"- {code_span(c.ref)}: {escape(why)}" for c, why in skipped]
    out += ["", "Rerun (continues from the state file):", "", code_span(summary.command), ""]
    return "\n".join(out)
