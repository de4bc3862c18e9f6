"""The image's stack by component (harness/worker/stack.py) and the diff between two images'
stacks with the layer it points at (harness/host/bisect/components.py)."""

from __future__ import annotations

from pathlib import Path

from harness.host.bisect.components import BOTH, NEITHER, STACK_ONLY, UNKNOWN, VLLM_ONLY, diff
from harness.worker.stack import (COMPONENTS, dpkg_versions, library_version, stack_versions,
                                  torch_build)

DPKG = """Package: hipblaslt
Status: install ok installed
Version: 0.15.0-1f2e3d

Package: rocblas-dev
Status: install ok installed
Version: 4.4.0.60400-120~22.04

Package: rocblas-removed
Status: deinstall ok config-files
Version: 1.0
"""


def image_root(tmp_path: Path, rocm: str | None, dpkg: str = "", libs: tuple[str, ...] = ()):
    root = tmp_path / "root"
    (root / "opt/rocm/lib").mkdir(parents=True)
    if rocm is not None:
        (root / "opt/rocm/.info").mkdir(parents=True)
        (root / "opt/rocm/.info/version").write_text(rocm + "\n")
    if dpkg:
        (root / "var/lib/dpkg").mkdir(parents=True)
        (root / "var/lib/dpkg/status").write_text(dpkg)
    for name in libs:
        (root / "opt/rocm/lib" / name).write_text("")
    return root


def versions(table):
    return lambda name: table.get(name)


def test_the_stack_is_read_as_an_image_records_it(tmp_path):
    root = image_root(tmp_path, "6.4.1-120", DPKG)
    table = {"vllm": "0.11.1rc2.dev123+g1a2b3c4d.rocm641", "torch": "2.7.0+rocm6.4",
             "pytorch-triton-rocm": "3.3.0", "amd-aiter": "0.1.4", "transformers": "4.56.0"}
    got = stack_versions(root, versions(table),
                         lambda: "__version__ = '2.7.0'\ncuda: Optional[str] = None\n"
                                 "hip: Optional[str] = '6.4.43482-0f2d60242'\n")
    assert list(got) == list(COMPONENTS)
    assert got == {"vllm": "0.11.1rc2.dev123+g1a2b3c4d.rocm641", "vllm_commit": "1a2b3c4d",
                   "torch": "2.7.0+rocm6.4", "torch_hip": "6.4.43482-0f2d60242",
                   "torch_cuda": None, "triton": "3.3.0", "aiter": "0.1.4", "rocm": "6.4.1-120",
                   "hipblaslt": "0.15.0-1f2e3d", "rocblas": "4.4.0.60400-120~22.04",
                   "transformers": "4.56.0"}


def test_shared_library_versions_where_dpkg_does_not_know(tmp_path):
    root = image_root(tmp_path, None, libs=("libhipblaslt.so", "libhipblaslt.so.0",
                                            "libhipblaslt.so.0.15.0", "libhipblaslt.so.0.15"))
    assert library_version(root / "opt/rocm/lib", "libhipblaslt.so") == "0.15.0"
    got = stack_versions(root, versions({}), lambda: "")
    assert got["hipblaslt"] == "0.15.0" and got["rocblas"] is None and got["rocm"] is None
    assert got["torch_hip"] is None and got["vllm"] is None


def test_dpkg_and_torch_parsers():
    assert dpkg_versions(DPKG, ("hipblaslt", "rocblas")) == {
        "hipblaslt": "0.15.0-1f2e3d", "rocblas": "4.4.0.60400-120~22.04"}
    assert torch_build("cuda = '12.8'\nhip = None\n") == {"torch_hip": None, "torch_cuda": "12.8"}


def test_stack_versions_of_this_environment_reads_its_packages():
    got = stack_versions()
    assert got["vllm"] == "0.32.0" and got["torch"] and got["transformers"]


BASE = {"vllm": "0.11.1+gaaaaaaa", "vllm_commit": "aaaaaaa", "torch": "2.7.0",
        "torch_hip": "6.4.1", "rocm": "6.4.1", "triton": "3.3.0", "transformers": "4.56.0"}


def test_the_layer_named_by_what_changed():
    assert diff(BASE, {**BASE, "rocm": "7.0.0"}).layer == STACK_ONLY
    assert diff(BASE, {**BASE, "vllm": "0.11.1+gbbbbbbb", "vllm_commit": "bbbbbbb"}).layer \
        == VLLM_ONLY
    both = diff(BASE, {**BASE, "vllm_commit": "bbbbbbb", "aiter": "0.1.5"})
    assert both.layer == BOTH
    assert [(c.label, c.before, c.after) for c in both.changes] == [
        ("vLLM commit", "aaaaaaa", "bbbbbbb"), ("AITER", None, "0.1.5")]
    other = diff(BASE, {**BASE, "transformers": "4.57.0"})
    assert other.layer == NEITHER and [c.component for c in other.changes] == ["transformers"]
    assert diff(BASE, None).layer == UNKNOWN and not diff(None, BASE).known
    cuda = {**BASE, "torch_hip": None, "torch_cuda": "12.8", "rocm": None}
    assert diff(cuda, {**cuda, "torch_cuda": "13.0"}).layer == "CUDA stack changed only"


def finished_state(stacks, labels=None):
    """A bisect over 4 images that ended: 0 and 1 good, 2 and 3 bad, with recorded stacks."""
    from harness.host.bisect.state import BisectState, Candidate, Step

    candidates = [Candidate(ref=f"reg/vllm/vllm-openai-rocm:nightly-{i}{'a' * 7}",
                            labels=(labels or {}).get(i, {})) for i in range(4)]
    plan = [(3, "verify-bad", "fail"), (3, "confirm", "fail"), (0, "verify-good", "pass"),
            (2, "step", "fail"), (1, "step", "pass"), (2, "confirm", "fail")]
    steps = [Step(number=n, name=f"s{n}", candidate=c, purpose=p, outcome=o, status="x",
                  fingerprint={"stack": stacks[c]} if c in stacks else {})
             for n, (c, p, o) in enumerate(plan, 1)]
    return BisectState(id="t", case="c", platform="rocm", good="nightly-0", bad="nightly-3",
                       confirmations=1, confirm_at="final", verify_ends=True, source="file:x",
                       candidates=candidates, steps=steps)


def summary_of(state):
    from harness.host.bisect.report import Summary
    from harness.host.bisect.search import decide

    return Summary(state, decide(state.config(), state.runs()), "harness bisect ...")


def test_the_report_and_json_name_the_layer_the_changes_and_the_vllm_range():
    from harness.host.bisect.report import markdown, terminal
    from harness.host.bisect.summary import summary_json

    good = {**BASE}
    bad = {**BASE, "vllm": "0.11.1+gbbbbbbb", "vllm_commit": "bbbbbbb", "rocm": "7.0.0"}
    summary = summary_of(finished_state({0: good, 1: good, 2: bad, 3: bad}))
    text = markdown(summary, lambda rel: rel)
    assert "**Likely layer: both changed**" in text
    assert "| vLLM commit | `aaaaaaa` | `bbbbbbb` |" in text
    assert "| ROCm | `6.4.1` | `7.0.0` |" in text
    assert ("https://github.com/vllm-project/vllm/compare/1aaaaaaa...2aaaaaaa" in text)  # tags
    assert "likely layer: both changed" in terminal(summary)
    data = summary_json(summary)
    assert (data["status"], data["first_bad"]["index"], data["last_good"]["index"]) == \
        ("found", 2, 1)
    assert data["components"]["layer"] == BOTH and data["within_bound"]
    assert data["vllm_commits"]["compare_url"].endswith("/compare/1aaaaaaa...2aaaaaaa")


def test_without_recorded_stacks_the_layer_is_unknown_and_commits_come_from_results():
    from harness.host.bisect.report import commit_range, markdown
    from harness.host.bisect.summary import summary_json

    state = finished_state({1: BASE, 2: {**BASE, "vllm_commit": "ccccccc"}})
    # tags that name no commit: the range comes from the vLLM commits the results recorded
    state = state.model_copy(update={"candidates": [c.model_copy(update={"ref": f"r/x:t{i}"})
                                                    for i, c in enumerate(state.candidates)]})
    summary = summary_of(state)
    assert commit_range(summary) == ("aaaaaaa", "ccccccc", "https://github.com/vllm-project/"
                                     "vllm/compare/aaaaaaa...ccccccc")
    assert summary_json(summary)["components"]["layer"] == VLLM_ONLY
    unknown = summary_of(finished_state({}))
    assert "**Likely layer: unknown" in markdown(unknown, lambda rel: rel)
