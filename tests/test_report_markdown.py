"""The Buildkite annotation: parsed with markdown-it-py (CommonMark + GFM tables)."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from harness.compare import compare_runs
from harness.report.markdown import LinkStyle, escape, render_markdown
from tests.test_compare_data import (PHI, QWEN, expected_to_fail, failed, fingerprint, make_run,
                                     outside_top, real_result, swap_token, with_request)

HOSTILE = "crash: <script>alert(1)</script> | `x` & *y* [z](javascript:alert(1))\n# heading"


def parse(text: str):
    return MarkdownIt("commonmark").enable("table").parse(text)


def html_of(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


def table_widths(tokens) -> list[int]:
    widths, cells = [], 0
    for token in tokens:
        if token.type == "tr_open":
            cells = 0
        elif token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            widths.append(cells)
    return widths


def hostile_tail(r):
    return r.model_copy(update={"log": r.log.model_copy(update={
        "tail": "Traceback\n\x1b[31mERROR\x1b[0m ``` </details> <img src=x onerror=alert(1)>"})})


@pytest.fixture
def mixed_run(tmp_path):
    request = real_result().requests[0]
    stranger = with_request(request.id, swap_token(2, outside_top(request, 2)))
    return make_run(tmp_path, {
        "hf": None, "cuda": None,
        "rocm": {QWEN: lambda r: fingerprint(torch="2.13.1")(stranger(r)),
                 PHI: lambda r: hostile_tail(failed(HOSTILE)(r))}})


def test_annotation_renders_a_table_and_the_failures(mixed_run):
    text = render_markdown(compare_runs([mixed_run]), LinkStyle(relative_to=mixed_run.parent))
    tokens = parse(text)
    types = [t.type for t in tokens]
    assert "table_open" in types
    rows = [t for t in tokens if t.type == "tr_open"]
    assert len(rows) == 1 + 2 + 1 + 1  # header + 2 cases, environment header + 1 key
    cells = [t.content for t in tokens if t.type == "inline"]
    assert any(c.startswith("harness compare: exit 1") for c in cells)
    fences = [t.content for t in tokens if t.type == "fence"]
    assert any("not in the baseline's top-5" in f for f in fences)  # the first divergence
    assert any("Traceback" in f and "\x1b" not in f for f in fences)  # tail, colours stripped
    rendered = html_of(text)
    assert "the reference hf agrees with cuda, not rocm" in rendered
    assert "reproduce on rocm: <code>harness run --platform" in rendered
    assert 'href="run-1/rocm/phi4mm_variable_crop.log"' in rendered
    assert "<td>torch</td>" in rendered and "2.13.1" in rendered


def test_text_from_results_cannot_inject_html_or_structure(mixed_run):
    text = render_markdown(compare_runs([mixed_run]))
    tokens = parse(text)
    raw_html = [t.content for t in tokens if t.type == "html_block"]
    raw_html += [c.content for t in tokens if t.type == "inline" for c in t.children or []
                 if c.type == "html_inline"]
    # Only the <details> wrappers the report writes itself; nothing from the results.
    assert raw_html and all(h.startswith(("<details>", "</details>")) for h in raw_html)
    assert not any("script" in h or "onerror" in h.split("```")[0] for h in raw_html)
    rendered = html_of(text)
    assert "<script>" not in rendered and "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert 'href="javascript' not in rendered
    assert "<h1>" not in rendered  # "# heading" in a message stays text
    # The case table kept five cells a row despite the '|' in the message.
    assert table_widths(tokens)[:3] == [5, 5, 5]


def test_expected_failure_links_only_web_urls(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": {
        QWEN: expected_to_fail("xfailed", link="javascript:alert(1)"),
        PHI: expected_to_fail("xfailed")}})
    rendered = html_of(render_markdown(compare_runs([run])))
    assert 'href="https://github.com/vllm-project/vllm/pull/43647"' in rendered
    assert 'href="javascript' not in rendered and "javascript:alert\\(1\\)" not in rendered


def test_buildkite_links_point_at_artifacts_and_jobs(mixed_run, monkeypatch):
    monkeypatch.chdir(mixed_run.parent)
    links = LinkStyle.from_env(mixed_run, {"BUILDKITE_BUILD_URL": "https://buildkite.com/o/p/builds/7"})
    comparison = compare_runs([mixed_run])
    rendered = html_of(render_markdown(comparison, links))
    assert 'href="artifact://run-1/rocm/phi4mm_variable_crop.log"' in rendered


def test_oversized_annotation_is_truncated_with_a_note(tmp_path):
    huge = "x" * 40_000
    run = make_run(tmp_path, {"cuda": None, "rocm": {
        PHI: lambda r: r.model_copy(update={"status": "failed", "failure_class": "crash",
                                            "message": "boom",
                                            "log": r.log.model_copy(update={"tail": huge})})}})
    comparison = compare_runs([run])
    full = render_markdown(comparison)
    assert huge in full
    cut = render_markdown(comparison, max_bytes=20_000)
    assert len(cut.encode()) < 20_000
    assert "Truncated to stay under" in cut and huge not in cut
    assert "table_open" in [t.type for t in parse(cut)]  # the table survives


def test_escape_keeps_one_line_and_entities():
    assert escape("a<b>&c\nd|e") == "a&lt;b&gt;&amp;c d\\|e"
    assert escape("snake_case *bold*") == "snake\\_case \\*bold\\*"
