"""An agent's GPU pinning becomes the container's device flags (fake KFD topology, no GPU)."""

from __future__ import annotations

import pytest

from harness.host.launch.agent_gpus import parse_render_devices, share_for_parallel_job
from harness.spec.case import SpecError
from tests.test_container_argv import group_file, kfd_sysfs, launch_for, pairs  # noqa: F401

# The fake topology (tests/test_container_argv.kfd_sysfs): GPU i has render minor 129 + i.
KFD = "/dev/kfd"


def rocm_devices(tmp_path, group_file, kfd_sysfs, **environ) -> list[str]:  # noqa: F811
    env = {"HOME": str(tmp_path / "home"), **environ}
    argv = launch_for("rocm", tmp_path, group_file, kfd_sysfs, environ=env).argv()
    return pairs(argv, "--device")


@pytest.mark.parametrize("variable", ["HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
                                      "CUDA_VISIBLE_DEVICES"])
def test_each_rocm_visibility_variable_pins_the_container(tmp_path, group_file, kfd_sysfs,  # noqa: F811
                                                          variable):
    devices = rocm_devices(tmp_path, group_file, kfd_sysfs, **{variable: "2,0"})
    assert devices == [KFD, "/dev/dri/renderD131", "/dev/dri/renderD129"]


def test_hip_indexes_inside_rocrs_set(tmp_path, group_file, kfd_sysfs):  # noqa: F811
    devices = rocm_devices(tmp_path, group_file, kfd_sysfs, ROCR_VISIBLE_DEVICES="1,2,3",
                           HIP_VISIBLE_DEVICES="2")
    assert devices == [KFD, "/dev/dri/renderD132"]  # ROCr's third GPU is host GPU 3
    with pytest.raises(SpecError, match="HIP_VISIBLE_DEVICES='3' indexes GPU 3 of the 3"):
        rocm_devices(tmp_path, group_file, kfd_sysfs, ROCR_VISIBLE_DEVICES="1,2,3",
                     HIP_VISIBLE_DEVICES="3")


def test_buildkite_render_devices_as_vllms_amd_ci_passes_them(tmp_path, group_file,  # noqa: F811
                                                              kfd_sysfs):
    devices = rocm_devices(
        tmp_path, group_file, kfd_sysfs,
        BUILDKITE_AGENT_META_DATA_RENDER_DEVICES="--device /dev/dri/renderD130 "
                                                 "--device=/dev/dri/renderD131",
        HIP_VISIBLE_DEVICES="0")  # the metadata wins: it is what the node's operator set
    assert devices == [KFD, "/dev/dri/renderD130", "/dev/dri/renderD131"]


def test_pinned_rocm_flags_keep_groups_and_security_options(tmp_path, group_file, kfd_sysfs):  # noqa: F811
    env = {"HOME": str(tmp_path), "HIP_VISIBLE_DEVICES": "1"}
    argv = launch_for("rocm", tmp_path, group_file, kfd_sysfs, environ=env).argv()
    assert pairs(argv, "--group-add") == ["video", "109"]
    assert pairs(argv, "--security-opt") == ["seccomp=unconfined"]
    assert "/dev/dri" not in pairs(argv, "--device")
    # The variable itself is not passed in: inside, the one exposed GPU is GPU 0.
    assert not any("VISIBLE_DEVICES" in a for a in pairs(argv, "-e"))


def test_command_line_gpus_win_over_the_agent(tmp_path, group_file, kfd_sysfs):  # noqa: F811
    env = {"HOME": str(tmp_path), "HIP_VISIBLE_DEVICES": "1"}
    argv = launch_for("rocm", tmp_path, group_file, kfd_sysfs, gpus="3", environ=env).argv()
    assert pairs(argv, "--device") == [KFD, "/dev/dri/renderD132"]


def test_agents_on_one_node_never_share_a_gpu(tmp_path, group_file, kfd_sysfs):  # noqa: F811
    seen = []
    for agent in ("0,1", "2,3"):
        seen += rocm_devices(tmp_path, group_file, kfd_sysfs, HIP_VISIBLE_DEVICES=agent)[1:]
    assert len(seen) == len(set(seen)) == 4


def test_parallel_jobs_split_the_agents_own_gpus(tmp_path, group_file, kfd_sysfs):  # noqa: F811
    env = {"HOME": str(tmp_path), "ROCR_VISIBLE_DEVICES": "0,1,2,3",
           "BUILDKITE_PARALLEL_JOB": "1"}
    argv = launch_for("rocm", tmp_path, group_file, kfd_sysfs, environ=env,
                      gpus_per_job=2).argv()
    assert pairs(argv, "--device") == [KFD, "/dev/dri/renderD131", "/dev/dri/renderD132"]
    with pytest.raises(ValueError, match="pinned to 2"):
        share_for_parallel_job(["a", "b"], 1, 2)


@pytest.mark.parametrize("engine,value,expected", [
    ("docker", "1", ["--gpus", "device=1"]),
    ("docker", "0,3", ["--gpus", '"device=0,3"']),
    ("docker", "GPU-0a1b-2c3d", ["--gpus", "device=GPU-0a1b-2c3d"]),
    ("podman", "2", ["--device", "nvidia.com/gpu=2"]),
])
def test_cuda_visible_devices_pins_the_cuda_container(tmp_path, group_file, engine, value,  # noqa: F811
                                                      expected):
    env = {"HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": value}
    argv = launch_for("cuda", tmp_path, group_file, engine=engine, environ=env).argv()
    options = argv[:argv.index("--kill-after=30s")]
    flag = expected[0]
    found = [options[i:i + 2] for i, a in enumerate(options) if a == flag and
             (flag == "--gpus" or options[i + 1].startswith("nvidia.com"))]
    assert [x for pair in found for x in pair] == expected


@pytest.mark.parametrize("variable,value,message", [
    ("HIP_VISIBLE_DEVICES", "0,x", "expected comma-separated GPU indices"),
    ("ROCR_VISIBLE_DEVICES", "1,1", "a GPU repeats"),
    ("BUILDKITE_AGENT_META_DATA_RENDER_DEVICES", "--device /dev/kfd", "renderD<N>"),
    ("HIP_VISIBLE_DEVICES", "7", "not present"),
])
def test_bad_pinning_is_a_one_line_error(tmp_path, group_file, kfd_sysfs, variable, value,  # noqa: F811
                                         message):
    with pytest.raises(SpecError, match=message):
        rocm_devices(tmp_path, group_file, kfd_sysfs, **{variable: value})


def test_render_devices_parser():
    assert parse_render_devices("/dev/dri/renderD128 --device /dev/dri/renderD129:rw") == \
        ["/dev/dri/renderD128", "/dev/dri/renderD129"]
    with pytest.raises(ValueError, match="--device without a path"):
        parse_render_devices("--device")


def test_cpu_platforms_ignore_gpu_variables(tmp_path, group_file):  # noqa: F811
    env = {"HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": "0",
           "BUILDKITE_AGENT_META_DATA_RENDER_DEVICES": "--device /dev/dri/renderD128"}
    argv = launch_for("cpu-podman", tmp_path, group_file, environ=env).argv()
    assert not any("/dev/dri" in a or "nvidia" in a for a in argv)


def worker_pytest(platform: str, *extra: str):
    import subprocess
    import sys

    from tests.conftest import CASES, REPO

    return subprocess.run([sys.executable, "-m", "pytest", "-p", "harness.worker.plugin",
                           "-p", "no:cacheprovider", "--harness-platform", platform, *extra,
                           str(CASES)], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_xdist_is_refused_on_gpu_platforms_with_a_clear_message():
    for platform in ("rocm", "cuda"):
        done = worker_pytest(platform, "-n", "2")
        assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
        assert "pytest-xdist (-n) is refused on GPU platforms" in done.stderr
        assert f"--platform {platform} --gpus 0" in done.stderr
    cpu = worker_pytest("cpu", "-n", "2", "--collect-only", "-q")
    assert cpu.returncode == 0 and "2 tests collected" in cpu.stdout + cpu.stderr
