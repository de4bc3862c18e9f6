"""The first real nights, rehearsed here: vLLM-shaped images in a loopback registry
(tests/vllm_images.py), the shipped platforms with one override (tests/rehearsal_setup.py).

* ``test_harness_run_in_a_raw_vllm_image``: ``harness run --platform rocm --image <the raw
  nightly stand-in>`` runs both cases in an image with vLLM and no pytest, nothing installed.
* ``test_night_1_...``: the scheduled build (tests/rehearsal.py) all green, ROCm vs CUDA at
  parity though the version strings differ, annotated, ingested into PostgreSQL, both lanes on
  the dashboard in Chromium.
* ``test_night_2_...``: rocm's ``nightly`` moved to an image with the Phi4MM fix reverted in its
  vLLM: red on rocm, the annotation names the case and its failure, newly broken on rocm only,
  and the bisect the dashboard proposes names the first bad tag.
"""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.host.bisect.candidates import tag_of
from harness.host.bisect.registry import registry_candidates
from harness.results import read_result
from tests.conftest import REPO
from tests.hub_fixtures import fake_hub_cache
from tests.rehearsal_setup import write_cases
from tests.rehearsal import NIGHT2_FIRST_BAD, NIGHT2_LAST
from tests.vllm_images import fake_commit, vllm_version

pytestmark = pytest.mark.container

CASE_IDS = ["phi4mm_variable_crop", "qwen2_5_vl_vit_cudagraph"]
RUN_TIMEOUT_S = 1500


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory) -> Path:
    """The agents' Hugging Face cache: the cases' hub snapshots (tiny models) already there."""
    home = tmp_path_factory.mktemp("rehearsal-hf")
    fake_hub_cache(home)
    for path in [home, *home.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return home


@pytest.fixture(scope="session")
def night1_images(nightlies) -> dict[str, str]:
    """Night 1: vLLM's rocm and cuda nightlies of one commit, `nightly` pointing at them."""
    commit = fake_commit(1)
    return {p: nightlies.publish(p, commit) for p in ("rocm", "cuda")}


def harness(*args: str, env: dict[str, str], cwd: Path = REPO,
            timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_harness_run_in_a_raw_vllm_image(tmp_path, docker_engine, nightlies, night1_images,
                                         hf_home):
    image = night1_images["rocm"]
    # The image is shaped like vLLM's: vLLM with a ROCm build's version, no pytest, no harness.
    probe = docker_engine("run", "--rm", "--network=host", "--entrypoint", "python3", image, "-c",
                          "import importlib.util as u, importlib.metadata as m; "
                          "print(m.version('vllm'), u.find_spec('pytest'), "
                          "u.find_spec('harness'))")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [vllm_version("rocm", fake_commit(1)), "None", "None"]
    entry = docker_engine("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image)
    assert entry.stdout.strip() == '["vllm","serve"]'
    cases = write_cases(tmp_path / "cases", nightlies.registry)
    results = tmp_path / "results"
    env = {**os.environ, **docker_engine.env, "HF_HOME": str(hf_home)}
    began = time.monotonic()
    done = harness("run", "--platform", "rocm", "--image", image, "--cases", str(cases),
                   "--platforms-file", str(cases / "platforms.yaml"), "--results", str(results),
                   "--run-id", "raw", env=env)
    wall = time.monotonic() - began
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    for case in CASE_IDS:
        result = read_result(results / "raw" / "rocm" / f"{case}.json")
        assert result.status == "passed", (case, result.message)
        fp = result.fingerprint
        assert fp["vllm"] == vllm_version("rocm", fake_commit(1)) and fp["container"]
        assert fp["image"] == image and fp["launch"] == "container"
        assert fp["image_digest"].startswith(f"{nightlies.repository('rocm')}@sha256:")
    # Nothing was installed into the image: it is byte for byte what the registry holds.
    after = docker_engine("image", "inspect", "--format", "{{.Id}}", image)
    pulled = docker_engine("pull", image)
    assert pulled.returncode == 0 and "Image is up to date" in pulled.stdout
    assert docker_engine("image", "inspect", "--format", "{{.Id}}", image).stdout == after.stdout
    print(f"\nharness run --platform rocm --image <raw stand-in>: {wall:.0f} s for both cases")


# ---------------------------------------------------------------- the nights


NIGHT1_STEPS = {"default-upload", "pipeline-upload-nightly", "run-rocm", "run-cuda",
                "compare-cuda-vs-rocm", "nightly-history"}


def dashboard_dom(night, tmp_path: Path) -> str:
    """The night's dashboard artifact, opened in real headless Chromium (its DOM after the
    page's script ran)."""
    from tests.test_dashboard_browser import QUIET_FLAGS, chromium

    page = night.run.artifact("results/dashboard.html")
    dumped = subprocess.run([chromium(), *QUIET_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                             "--dump-dom", page.as_uri()], capture_output=True, text=True,
                            timeout=120)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert 'data-js="ok"' in dumped.stdout, "the page's script did not run to its end"
    return dumped.stdout


def stored_results(night) -> dict[tuple[str, str, str], str]:
    """(run id, platform, case) -> status, read from the night's PostgreSQL store."""
    import psycopg

    with psycopg.connect(night.database, connect_timeout=10) as conn:
        rows = conn.execute("SELECT r.run_id, r.platform, c.case_id, x.status FROM results x "
                            "JOIN runs r ON r.id = x.run_ref JOIN cases c ON c.id = x.case_ref"
                            ).fetchall()
    return {(run, platform, case): status for run, platform, case, status in rows}


def test_night_1_is_green_at_parity_stored_and_on_the_dashboard(night1, tmp_path):
    run = night1.run
    assert set(run.build.outcomes) == NIGHT1_STEPS
    assert all(o == "passed" for o in run.build.outcomes.values()), \
        {k: (o, run.log(k)[-3000:]) for k, o in run.build.outcomes.items() if o != "passed"}
    # Each GPU step ran on its queue's agent, as the README sets agents up (no vLLM there).
    agents = {j.step: j.agent for j in run.build.jobs}
    assert (agents["run-rocm"], agents["run-cuda"]) == ("mi300-gpu0", "h100-gpu0")
    # The images ran as published, and the result records the digest that ran.
    for platform in ("rocm", "cuda"):
        for case in CASE_IDS:
            result = read_result(run.artifact(f"results/build-1/{platform}/{case}.json"))
            fp = result.fingerprint
            assert result.status == "passed" and fp["vllm"] == vllm_version(platform,
                                                                             fake_commit(1))
            assert fp["image_digest"].split("@")[0] == night1.images[platform].split(":nightly")[0]
    # ROCm vs CUDA: parity on outputs although the version strings differ.
    report = run.artifact("compare/cuda-vs-rocm.md").read_text()
    annotation = run.annotation("harness-compare-cuda-vs-rocm")
    assert annotation.strip() == report.strip()
    assert "not-comparable" not in report and "parity" in report.lower(), report[:3000]
    assert (run.state / "annotations" / "harness-compare-cuda-vs-rocm.style").read_text() == \
        "success"
    # Ingested into the real PostgreSQL store, and the dashboard shows both lanes.
    stored = stored_results(night1)
    assert {(p, c): s for (r, p, c), s in stored.items() if r == "build-1"} == {
        (p, c): "passed" for p in ("rocm", "cuda") for c in CASE_IDS}
    dom = dashboard_dom(night1, tmp_path)
    for platform in ("rocm", "cuda"):
        assert f'data-platform="{platform}"' in dom
    assert dom.count('class="p') >= 4  # a passed cell per case and lane
    print(f"\nrehearsal night 1: {night1.seconds:.0f} s")


def test_night_2_is_red_on_rocm_names_the_case_and_its_bisect_finds_the_first_bad(
        night1, night2, tmp_path):
    run = night2.run
    outcomes = run.build.outcomes
    assert outcomes["run-rocm"] == "failed" and not run.passed, outcomes
    assert outcomes["run-cuda"] == "passed" and outcomes["nightly-history"] == "passed", outcomes
    phi4mm = read_result(run.artifact("results/build-2/rocm/phi4mm_variable_crop.json"))
    assert phi4mm.status == "failed"
    assert phi4mm.fingerprint["vllm"] == vllm_version("rocm", fake_commit(NIGHT2_LAST))
    assert read_result(run.artifact(
        "results/build-2/rocm/qwen2_5_vl_vit_cudagraph.json")).status == "passed"
    # The annotation names the case and how it failed.
    annotation = run.annotation("harness-compare-cuda-vs-rocm")
    assert "phi4mm_variable_crop" in annotation
    assert "'list' object has no attribute 'to'" in annotation, annotation[:4000]
    assert (run.state / "annotations" / "harness-compare-cuda-vs-rocm.style").read_text() == \
        "error"
    # The dashboard: newly broken on rocm only (one first-bad mark, in rocm's phi4mm row).
    dom = dashboard_dom(night2, tmp_path)
    marks = re.findall(r'<table class="grid"[^>]*data-platform="(\w+)".*?</table>', dom, re.S)
    assert set(marks) >= {"rocm", "cuda"}
    tables = dict(re.findall(r'data-platform="(\w+)"(.*?)</table>', dom, re.S))
    assert 'class="flag new"' in tables["rocm"] and 'class="flag new"' not in tables["cuda"]
    rocm_rows = re.findall(r'<tr class="line[^"]*" data-case="(\w+)"(.*?)</tr>', tables["rocm"],
                           re.S)
    assert [case for case, row in rocm_rows if 'class="flag new"' in row] == \
        ["phi4mm_variable_crop"]
    # The page proposes a bisect over the registry's drop-in tags: the very range (case,
    # platform, the nights' images by digest, the tags' repository) that night 2's own bisect
    # ran by tag on the rocm agent with the same `harness bisect`, and found nightly-<commit
    # NIGHT2_FIRST_BAD> (test_rehearsal_autobisect.py asserts the run); running it a second time
    # here cost 3 min.
    proposed = re.search(r'<div class="bisect">find the first bad image: <code>(.*?)</code>',
                         dom, re.S)
    assert proposed, "the dashboard proposes no bisect"
    words = shlex.split(html.unescape(proposed.group(1)))
    assert words[:2] == ["harness", "bisect"], words
    flags = dict(zip(words[2::2], words[3::2]))
    repository = flags["--tags-from"]
    assert repository == f"{night2.registry}/vllm/vllm-openai-rocm", flags
    [auto] = [k.removeprefix("bisect-") for k in run.build.outcomes
              if k.startswith("bisect-auto-")]
    ran = json.loads(run.artifact(f"results/bisect-{auto}/bisect.json").read_text())
    assert (flags["--case"], flags["--platform"]) == ("phi4mm_variable_crop", "rocm")
    digest_of = {tag_of(c.ref): c.digest for c in registry_candidates(repository)}
    assert (flags["--good"], flags["--bad"]) == (f"{repository}@{digest_of[ran['good']]}",
                                                 f"{repository}@{digest_of[ran['bad']]}"), \
        (flags, ran["good"], ran["bad"])
    assert ran["first_bad"]["ref"].endswith(f":nightly-{fake_commit(NIGHT2_FIRST_BAD)}")
    print(f"\nrehearsal night 2: {night2.seconds:.0f} s")
