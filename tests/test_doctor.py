"""`harness doctor`: GPU parsers on recorded outputs, device checks on fake /dev trees, and the
real engines (podman, and the CPU platform) on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness import gpuinfo
from harness.host.doctor import (Host, check_gpus_clean, check_image, check_rocm_devices, failed,
                            parse_created, platform_checks)
from harness.host.launch.own_gpus import own_gpus
from harness.spec.case import load_platforms
from tests.conftest import CASES, REPO, require_tools

SMI = Path(__file__).parent / "data" / "smi"
PLATFORMS = load_platforms(CASES / "platforms.yaml")


def recorded(**outputs: str):
    """A command runner answering from recorded files (tool name -> file); others: missing."""
    def runner(argv: list[str]) -> tuple[int, str]:
        name = outputs.get(argv[0])
        return (0, (SMI / name).read_text()) if name else (127, "")
    return runner


def test_amd_smi_both_json_forms():
    gpus = gpuinfo.parse_amd_smi_memory((SMI / "amd-smi-metric-mem-usage.json").read_text())
    assert [(g.index, g.total_mib, g.used_mib) for g in gpus] == [(0, 196592, 283),
                                                                  (1, 196592, 177213)]
    wrapped = gpuinfo.parse_amd_smi_memory((SMI / "amd-smi-gpu-data.json").read_text())
    assert [g.index for g in wrapped] == [0, 1]
    bare = gpuinfo.parse_amd_smi_memory('[{"gpu": 3, "mem_usage": {"total_vram": 1000, '
                                    '"used_vram": 10}}]')
    assert bare[0].used_fraction == 0.01
    with pytest.raises(gpuinfo.ParseError, match="unknown memory unit"):
        gpuinfo.parse_amd_smi_memory('[{"gpu": 0, "mem_usage": {"total_vram": {"value": 1, '
                                 '"unit": "parsec"}, "used_vram": 0}}]')


def test_rocm_smi_and_nvidia_smi():
    rocm = gpuinfo.parse_rocm_smi_memory((SMI / "rocm-smi-showmeminfo-vram.json").read_text())
    assert [g.index for g in rocm] == [0, 1] and round(rocm[0].total_mib) == 196592
    assert round(rocm[1].used_fraction, 2) == 0.9
    nvidia = gpuinfo.parse_nvidia_smi_memory((SMI / "nvidia-smi-query-memory.csv").read_text())
    assert [(g.index, g.used_mib) for g in nvidia] == [(0, 4), (1, 0), (2, 73406)]
    with pytest.raises(gpuinfo.ParseError):
        gpuinfo.parse_nvidia_smi_memory("0, [N/A], 3\n")
    idle = gpuinfo.parse_nvidia_smi_memory((SMI / "nvidia-smi-query-memory-h200.csv").read_text())
    assert idle == [gpuinfo.GpuMemory(0, 143771, 0)]  # captured on an H200


@pytest.mark.parametrize("accelerator,outputs,busy", [
    ("rocm", {"amd-smi": "amd-smi-metric-mem-usage.json"}, "amd-smi: memory in use on GPU 1"),
    ("rocm", {"rocm-smi": "rocm-smi-showmeminfo-vram.json"}, "rocm-smi: memory in use on GPU 1"),
    ("cuda", {"nvidia-smi": "nvidia-smi-query-memory.csv"}, "nvidia-smi: memory in use on GPU 2"),
])
def test_gpus_clean_fails_on_a_leftover_and_names_the_gpu(accelerator, outputs, busy):
    check = check_gpus_clean(accelerator, Host(runner=recorded(**outputs)))
    assert check.status == "fail" and busy in check.detail
    assert "gpu_memory_utilization" in check.fix


def test_gpus_clean_passes_and_falls_back_from_amd_smi_to_rocm_smi():
    clean = check_gpus_clean("rocm", Host(runner=recorded(**{"amd-smi": "amd-smi-gpu-data.json"})))
    assert clean.status == "pass" and "amd-smi: all GPUs" in clean.detail
    fallback = check_gpus_clean("rocm", Host(runner=recorded(
        **{"rocm-smi": "rocm-smi-showmeminfo-vram.json"})))
    assert fallback.status == "fail" and fallback.detail.startswith("rocm-smi:")


def test_a_host_without_the_gpu_tools_is_a_warning_not_a_stop():
    missing = check_gpus_clean("cuda", Host(runner=recorded()))
    assert missing.status == "warn" and "nvidia-smi not installed" in missing.detail
    no_amd = check_gpus_clean("rocm", Host(runner=recorded()))
    assert no_amd.status == "warn" and "amd-smi not installed" in no_amd.detail
    broken = check_gpus_clean("cuda", Host(runner=lambda argv: (9, "driver mismatch")))
    assert broken.status == "fail"  # a tool that runs and fails: the node is not fit


def pinned(tmp_path: Path, tool: str, fixture: str, **environ: str) -> Host:
    """A host whose GPU tool answers from a recording (amd-smi: GPU 1 busy; nvidia-smi: GPU 2
    busy), with the agent's pinning in its environment and no KFD topology (default render
    numbering: renderD128 is GPU 0)."""
    return Host(runner=recorded(**{tool: fixture}), environ=dict(environ),
                sysfs=tmp_path / "no-sysfs")


@pytest.mark.parametrize("environ,status", [
    ({"ROCR_VISIBLE_DEVICES": "0"}, "warn"),  # GPU 1 busy: a neighbour's job
    ({"ROCR_VISIBLE_DEVICES": "1"}, "fail"),  # the agent's own GPU is busy
    ({"HIP_VISIBLE_DEVICES": "0"}, "warn"),
    ({"BUILDKITE_AGENT_META_DATA_RENDER_DEVICES": "--device /dev/dri/renderD128"}, "warn"),
    ({"BUILDKITE_AGENT_META_DATA_RENDER_DEVICES": "--device=/dev/dri/renderD129"}, "fail"),
    ({}, "fail"),  # no pinning: the run gets every GPU, a busy one is its problem
])
def test_rocm_preflight_judges_only_the_agents_own_gpus(tmp_path, environ, status):
    host = pinned(tmp_path, "amd-smi", "amd-smi-metric-mem-usage.json", **environ)
    [check] = [c for c in platform_checks(PLATFORMS["rocm"], host, cheap=True)
               if c.name == "gpus clean"]
    assert check.status == status, check.detail
    assert "memory in use on GPU 1: 177213/196592 MiB" in check.detail
    if status == "warn":
        assert "not the run's (GPU 0 (" in check.detail
    assert not failed([check]) if status == "warn" else failed([check])


@pytest.mark.parametrize("environ,gpus,status,says", [
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, None, "warn", "not the run's (GPU 0,1"),
    ({"CUDA_VISIBLE_DEVICES": "2"}, None, "fail", "the run's: GPU 2 (CUDA_VISIBLE_DEVICES)"),
    ({"CUDA_VISIBLE_DEVICES": "GPU-8f3a2c1e-aaaa-bbbb-cccc-0123456789ab"}, None, "warn",
     "cannot tell whether they are the run's"),
    ({}, "1", "warn", "not the run's (GPU 1 (--gpus))"),  # `harness run --gpus 1`
    ({"CUDA_VISIBLE_DEVICES": "7"}, None, "fail", "not the run's GPU 7"),  # pinned, not listed
])
def test_cuda_preflight_judges_only_the_runs_gpus(tmp_path, environ, gpus, status, says):
    host = pinned(tmp_path, "nvidia-smi", "nvidia-smi-query-memory.csv", **environ)
    platform = PLATFORMS["cuda"]
    check = check_gpus_clean("cuda", host, own_gpus(platform, host.environ, gpus, None,
                                                    host.sysfs))
    assert (check.status, says in check.detail) == (status, True), check.detail
    through = [c for c in platform_checks(platform, host, cheap=True, in_place=False, gpus=gpus)
               if c.name == "gpus clean"]
    assert [c.status for c in through] == [status]


def fake_dev(tmp_path: Path, nodes: int = 2) -> Path:
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    (dev / "kfd").write_text("")
    for i in range(nodes):
        (dev / "dri" / f"renderD{128 + i}").write_text("")
    return dev


def group_file(tmp_path: Path, render_gid: int) -> Path:
    path = tmp_path / "group"
    path.write_text(f"root:x:0:\nvideo:x:44:\nrender:x:{render_gid}:\n")
    return path


def test_rocm_devices_and_render_gid(tmp_path):
    dev = fake_dev(tmp_path)
    ok = check_rocm_devices(Host(dev=dev, group_file=group_file(tmp_path, os.getgid())))
    assert [(c.name, c.status) for c in ok] == [("kfd", "pass"), ("render nodes", "pass"),
                                                ("render gid", "pass")]
    wrong = check_rocm_devices(Host(dev=dev, group_file=group_file(tmp_path, os.getgid() + 7)))
    gid = next(c for c in wrong if c.name == "render gid")
    assert gid.status == "fail" and f"--group-add {os.getgid() + 7}" in gid.detail
    no_kfd = check_rocm_devices(Host(dev=tmp_path / "empty", group_file=tmp_path / "none"))
    assert no_kfd[0].status == "fail" and "kfd" in no_kfd[0].detail


def test_image_age_from_docker_and_podman_timestamps():
    now = datetime(2026, 11, 30, 20, 0, tzinfo=timezone.utc)
    assert parse_created("2026-11-30T18:00:00.123456789Z") == datetime(2026, 11, 30, 18, 0,
                                                                       tzinfo=timezone.utc)
    assert parse_created("2026-11-30 13:00:00.5 -0500 EST") == datetime(2026, 11, 30, 18, 0,
                                                                        tzinfo=timezone.utc)
    fresh = check_image(PLATFORMS["rocm"], Host(now=now, runner=lambda argv: (
        0, "2026-11-30T18:00:00Z\n")))
    assert fresh.status == "pass" and "built 0 d 2 h ago" in fresh.detail
    old = check_image(PLATFORMS["rocm"], Host(now=now, runner=lambda argv: (
        0, "2026-11-01T18:00:00Z\n")))
    assert old.status == "warn" and "29 d" in old.detail


def test_cheap_checks_on_a_rocm_node_without_gpus_stop_the_run(tmp_path):
    host = Host(dev=tmp_path / "no-dev", runner=recorded())  # no engine, no tools, no /dev/kfd
    checks = platform_checks(PLATFORMS["rocm"], host, cheap=True)
    assert [c.name for c in checks] == ["engine", "kfd", "gpus clean"]
    assert [c.status for c in checks] == ["fail", "fail", "warn"]  # no amd-smi: a warning
    in_place = platform_checks(PLATFORMS["rocm"], host, cheap=True, in_place=True)
    assert [c.name for c in in_place] == ["kfd", "gpus clean"]  # no container engine in place


# ---------------------------------------------------------------- real, on this machine


def doctor(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "doctor", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_doctor_on_this_machine_cpu_and_podman(tmp_path):
    require_tools("podman", "runc")
    done = doctor("--platform", "cpu,cpu-podman", "--results", str(tmp_path))
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr  # warnings only
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("PASS  engine") and "podman" in line for line in lines)
    assert any("image" in line and "localhost/vllm-harness:cpu" in line for line in lines)
    assert any(line.strip().startswith("PASS  disk: images") for line in lines)


def test_doctor_names_a_dead_engine_and_exits_3(tmp_path):
    done = doctor("--platform", "rocm", "--results", str(tmp_path),
                  env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock", "HF_TOKEN": ""})
    assert done.returncode == 3
    assert "FAIL  engine" in done.stdout and "-> fix:" in done.stdout
    assert "WARN  HF_TOKEN" in done.stdout
    assert "FAIL  hub snapshots" in done.stdout and "harness models fetch --platform rocm" \
        in done.stdout


def test_harness_run_stops_early_with_the_reason(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--platform", "rocm", "--results",
         str(tmp_path), "--run-id", "pre"], cwd=REPO, capture_output=True, text=True,
        timeout=120, env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert done.returncode == 3
    assert "preflight failed for rocm: engine: docker does not answer" in done.stderr
    from harness.results import read_result

    result = read_result(tmp_path / "pre/rocm/phi4mm_variable_crop.json")
    assert result.status == "error" and result.failure_class == "infra"
    assert "preflight: engine" in result.message


@pytest.mark.container
def test_doctor_against_a_real_docker_daemon(tmp_path, docker_engine, docker_base_image):
    import yaml

    data = yaml.safe_load((CASES / "platforms.yaml").read_text())
    data["platforms"]["cpu-podman"]["image"] = docker_base_image
    platforms = tmp_path / "platforms.yaml"
    platforms.write_text(yaml.safe_dump(data, sort_keys=False))
    done = doctor("--platform", "cpu-podman", "--engine", "docker", "--platforms-file",
                  str(platforms), "--results", str(tmp_path), env=docker_engine.env)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  engine           docker 20.10" in done.stdout
    assert f"PASS  image            {docker_base_image} present, built" in done.stdout
    assert "PASS  disk: images" in done.stdout and str(docker_engine.root) in done.stdout
