"""Fingerprint pieces ROCm triage needs: GPU tool parsers on recorded outputs (no GPU here),
vLLM commit, ROCm/AITER environment, model revision from the cache."""

from __future__ import annotations

from pathlib import Path

from harness import gpuinfo
from harness.proc import Captured

DATA = Path(__file__).parent / "data" / "gpuinfo"


def test_amd_smi_static_both_envelopes():
    gpus = gpuinfo.parse_amd_smi_static((DATA / "amd-smi-static.json").read_text())
    assert gpus[0] == {"index": 0, "name": "AMD Instinct MI300X", "gfx_arch": "gfx942",
                       "compute_units": 304, "driver": "6.8.5", "memory_mb": 196592}
    assert len(gpus) == 2
    assert gpuinfo.summarize(gpus) == "2x AMD Instinct MI300X (gfx942), driver 6.8.5"
    newer = gpuinfo.parse_amd_smi_static((DATA / "amd-smi-static-gpu-data.json").read_text())
    assert newer[0]["name"] == "AMD Instinct MI325X" and newer[0]["memory_mb"] == 262128


def test_amd_smi_version_and_nvidia_smi_csv():
    assert gpuinfo.parse_amd_smi_version((DATA / "amd-smi-version.json").read_text()) == {
        "amd_smi": "24.6.3+9578815", "rocm_version": "6.2.4"}
    gpus = gpuinfo.parse_nvidia_smi_csv((DATA / "nvidia-smi-query.csv").read_text())
    assert gpus[1] == {"index": 1, "name": "NVIDIA H100 80GB HBM3", "driver": "550.90.07",
                       "memory_mb": 81559, "compute_cap": "9.0"}
    assert gpuinfo.summarize(gpus) == "2x NVIDIA H100 80GB HBM3 (9.0), driver 550.90.07"


def test_nvidia_smi_csv_captured_on_an_h200():
    gpus = gpuinfo.parse_nvidia_smi_csv((DATA / "nvidia-smi-query-h200.csv").read_text())
    assert gpus == [{"index": 0, "name": "NVIDIA H200", "driver": "580.159.04",
                     "memory_mb": 143771, "compute_cap": "9.0"}]


def test_gpu_summary_runs_the_platforms_tool_through_a_runner():
    # The runner is the boundary (no GPU tools here); it returns the recorded outputs.
    outputs = {"static": (DATA / "amd-smi-static.json").read_text(),
               "version": (DATA / "amd-smi-version.json").read_text()}
    seen = []

    def recorded(argv):
        seen.append(argv)
        return Captured(0, outputs[argv[1]], "")

    summary = gpuinfo.gpu_summary("rocm", run=recorded)
    assert summary["rocm_version"] == "6.2.4" and summary["gpus"][0]["gfx_arch"] == "gfx942"
    assert seen == [["amd-smi", "static", "--json"], ["amd-smi", "version", "--json"]]
    broken = gpuinfo.gpu_summary("rocm", run=lambda argv: Captured(0, "{not json", ""))
    assert "could not parse" in broken["error"]
    assert gpuinfo.gpu_summary("cpu", run=recorded) == {}
    assert gpuinfo.gpu_summary("cuda", run=lambda argv: None) == {}  # tool absent


def test_vllm_commit_rocm_version_and_env(tmp_path):
    assert gpuinfo.vllm_commit("0.11.1rc2.dev123+g1a2b3c4d.rocm700") == "1a2b3c4d"
    assert gpuinfo.vllm_commit("0.32.0") is None
    info = tmp_path / "version"
    info.write_text("6.4.1-120\n")
    assert gpuinfo.rocm_version(info) == "6.4.1"
    assert gpuinfo.rocm_version(tmp_path / "absent") is None
    env = {"VLLM_ROCM_USE_AITER": "1", "VLLM_ROCM_USE_AITER_MHA": "0", "AITER_LOG_LEVEL": "1",
           "HIP_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "hf_x", "HOME": "/root",
           "VLLM_ROCM_SECRET_KEY": "x"}
    assert gpuinfo.gpu_env(env) == {"AITER_LOG_LEVEL": "1", "HIP_VISIBLE_DEVICES": "0,1",
                                    "VLLM_ROCM_USE_AITER": "1", "VLLM_ROCM_USE_AITER_MHA": "0"}


def test_fingerprint_carries_the_triage_fields():
    from harness.worker.fingerprint import fingerprint
    from tests.conftest import REPO

    fp = fingerprint("cpu", "cpu", REPO)
    for key in ("vllm_commit", "git_commit", "git_dirty", "gpu_env"):
        assert key in fp
    assert isinstance(fp["git_dirty"], bool)
