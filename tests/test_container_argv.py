"""The container launcher's argument lists, against AMD's, NVIDIA's and vLLM's documented flags.

No GPU, docker or podman is needed: host facts (/etc/group, the KFD topology) come from small
fake trees, and the engine is never called except where a test says so in its name.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.host.launch.container import (COMPILE_CACHE_DIR, HF_CACHE_DIR, INNER_DEADLINE_MARGIN_S,
                                      MODEL_CACHE_DIR, ContainerLaunch)
import harness.host.launch.container as container_module
from harness.host.launch.gpus import (gpus_for_parallel_job, parallel_job_index, parse_gpus,
                                 select_gpus)
from harness.host.launch.local import WorkerRequest
from harness.host.launch.start_worker import WorkerOutcome
from harness.host.launch.worker_deps import worker_deps_dir
from harness.spec.case import SpecError, load_platforms
from tests.conftest import CASES, REPO

SECRET = "hf_" + "secretVALUEthatMustNeverLeak1234567"  # a fake, split so scanners see no token
PLATFORMS = load_platforms(CASES / "platforms.yaml")


@pytest.fixture
def group_file(tmp_path: Path) -> Path:
    path = tmp_path / "group"
    path.write_text("root:x:0:\nvideo:x:44:\nrender:x:109:\nbuildkite:x:1000:\n")
    return path


@pytest.fixture
def kfd_sysfs(tmp_path: Path) -> Path:
    """A fake KFD topology: a CPU node, then 4 GPUs whose render minors are not 128 + index
    (as on a host with a display GPU first), listed out of order."""
    root = tmp_path / "sys"
    nodes = root / "class/kfd/kfd/topology/nodes"
    for node, gpu_id, minor in ((0, 0, None), (3, 3003, 131), (1, 1001, 129), (2, 2002, 130),
                                (4, 4004, 132)):
        entry = nodes / str(node)
        entry.mkdir(parents=True)
        (entry / "gpu_id").write_text(f"{gpu_id}\n")
        props = "cpu_cores_count 64\n" if minor is None else (
            f"cpu_cores_count 0\nsimd_count 304\ndrm_render_minor {minor}\n")
        (entry / "properties").write_text(props)
    return root


def request_for(name: str, tmp_path: Path, **platform_changes) -> WorkerRequest:
    platform = PLATFORMS[name].model_copy(update=platform_changes)
    return WorkerRequest(platform, sorted(CASES.glob("*_*.yaml")), CASES / "platforms.yaml",
                         tmp_path / "results", "build-42", None, REPO)


def launch_for(name: str, tmp_path: Path, group_file: Path, sysfs: Path | None = None,
               gpus: str | None = None, engine: str | None = None, environ=None,
               image: str | None = None, **platform_changes) -> ContainerLaunch:
    environ = {"HOME": str(tmp_path / "home"), "HF_TOKEN": SECRET} if environ is None else environ
    return ContainerLaunch(request_for(name, tmp_path, **platform_changes), engine=engine,
                           gpus=gpus, environ=environ, group_file=group_file,
                           sysfs=sysfs or tmp_path / "no-sys", image=image)


def pairs(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` (``--device X`` -> X) in the `run` options."""
    options = argv[:argv.index("--kill-after=30s")]
    return [options[i + 1] for i, arg in enumerate(options) if arg == flag]


def run_options(argv: list[str]) -> list[str]:
    return argv[:argv.index("--kill-after=30s")]


# ---------------------------------------------------------------- ROCm


def test_rocm_all_gpus_has_the_documented_device_group_and_security_flags(tmp_path, group_file):
    argv = launch_for("rocm", tmp_path, group_file).argv()
    assert argv[:2] == ["docker", "run"]
    assert pairs(argv, "--device") == ["/dev/kfd", "/dev/dri"]
    assert pairs(argv, "--group-add") == ["video", "109"]  # the host's render gid, by number
    assert pairs(argv, "--security-opt") == ["seccomp=unconfined"]
    assert "--ipc=host" in argv and "--shm-size" not in argv  # host IPC: the host's /dev/shm
    assert pairs(argv, "--entrypoint") == ["timeout"]  # not the image's OpenAI server
    assert not [a for a in argv if "VISIBLE_DEVICES" in a]


def test_rocm_selected_gpus_expose_only_their_render_nodes_from_kfd_topology(
        tmp_path, group_file, kfd_sysfs):
    argv = launch_for("rocm", tmp_path, group_file, kfd_sysfs, gpus="1,3").argv()
    assert pairs(argv, "--device") == ["/dev/kfd", "/dev/dri/renderD130", "/dev/dri/renderD132"]
    # Inside, ROCr enumerates only the exposed GPUs from 0: host indices in a visible-devices
    # variable would select the wrong GPU, so none is set.
    assert not [a for a in argv if "VISIBLE_DEVICES" in a]


def test_rocm_selected_gpus_without_kfd_topology_use_amds_default_numbering(tmp_path, group_file):
    argv = launch_for("rocm", tmp_path, group_file, gpus="0,1").argv()
    assert pairs(argv, "--device") == ["/dev/kfd", "/dev/dri/renderD128", "/dev/dri/renderD129"]


def test_rocm_gpu_index_beyond_the_topology_is_a_clear_error(tmp_path, group_file, kfd_sysfs):
    with pytest.raises(SpecError, match="GPU index 4 not present.*lists 4 GPU"):
        launch_for("rocm", tmp_path, group_file, kfd_sysfs, gpus="4")


def test_rocm_without_a_render_group_on_the_host_adds_video_only(tmp_path):
    group = tmp_path / "group"
    group.write_text("root:x:0:\nvideo:x:44:\n")
    assert pairs(launch_for("rocm", tmp_path, group).argv(), "--group-add") == ["video"]


def test_rocm_private_ipc_gets_the_platforms_shm_size(tmp_path, group_file):
    argv = launch_for("rocm", tmp_path, group_file, ipc="private").argv()
    assert "--ipc=private" in argv and pairs(argv, "--shm-size") == ["16g"]


# ---------------------------------------------------------------- CUDA


@pytest.mark.parametrize(("gpus", "expected"), [
    (None, "all"), ("2", "device=2"), ("0,1", '"device=0,1"')])
def test_cuda_docker_gpus_flag_as_nvidia_documents(tmp_path, group_file, gpus, expected):
    launch = launch_for("cuda", tmp_path, group_file, gpus=gpus)
    argv = launch.argv()
    assert pairs(argv, "--gpus") == [expected]
    assert "--ipc=host" in argv and not pairs(argv, "--device")
    if gpus == "0,1":  # what a shell user types, per NVIDIA's docs
        assert "--gpus '\"device=0,1\"'" in launch.reproduce()


def test_cuda_podman_uses_cdi_device_names(tmp_path, group_file):
    argv = launch_for("cuda", tmp_path, group_file, gpus="0,3", engine="podman").argv()
    assert argv[:2] == ["podman", "run"]
    assert pairs(argv, "--device") == ["nvidia.com/gpu=0", "nvidia.com/gpu=3"]
    assert not pairs(argv, "--gpus")


# ---------------------------------------------------------------- secrets, mounts, env


@pytest.mark.parametrize("name", ["rocm", "cuda"])
def test_secrets_pass_by_name_only(tmp_path, group_file, name):
    environ = {"HOME": str(tmp_path), "HF_TOKEN": SECRET, "OTHER_API_KEY": "sk-not-passed-9999"}
    launch = launch_for(name, tmp_path, group_file, environ=environ)
    argv, reproduce = launch.argv(), launch.reproduce()
    assert SECRET not in " ".join(argv) and SECRET not in reproduce
    assert "OTHER_API_KEY" not in reproduce and "sk-not-passed" not in reproduce
    assert pairs(argv, "-e").count("HF_TOKEN") == 1  # by name: the client reads its own env
    assert launch.env()["HF_TOKEN"] == SECRET  # ...which env() hands to the client


def test_mounts_repo_readonly_results_and_caches_readwrite(tmp_path, group_file):
    environ = {"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}
    argv = launch_for("rocm", tmp_path, group_file, environ=environ).argv()
    compile_cache = f"{tmp_path}/.cache/vllm-harness/compile/rocm/" \
                    "vllm_vllm-openai-rocm_nightly"
    assert pairs(argv, "-v") == [f"{REPO}:/workspace:ro", f"{tmp_path}/results:/results:rw",
                                 f"{tmp_path}/hf:{HF_CACHE_DIR}:rw",
                                 f"{compile_cache}:{COMPILE_CACHE_DIR}:rw",
                                 f"{worker_deps_dir(environ)}:/opt/harness-worker-deps:ro"]
    assert (Path(pairs(argv, "-v")[-1].split(":")[0]) / "pytest/__init__.py").is_file()
    assert "HARNESS_WORKER_DEPS=/opt/harness-worker-deps" in pairs(argv, "-e")
    worker = argv[argv.index("--kill-after=30s"):]
    assert worker[3:7] == ["python3", "-m", "harness.worker", "-p"]
    assert ["--harness-results", "/results"] == worker[worker.index("--harness-results"):][:2]
    assert "/workspace/cases/platforms.yaml" in worker
    assert "/workspace/cases/qwen2_5_vl_vit_cudagraph.yaml" in worker
    assert "--junitxml=/results/build-42/rocm/junit-rocm.xml" in worker


def test_container_env_names_image_commit_and_checkout(tmp_path, group_file):
    argv = launch_for("rocm", tmp_path, group_file).argv()
    env = pairs(argv, "-e")
    assert {"HARNESS_IN_CONTAINER=1", "HARNESS_IMAGE=vllm/vllm-openai-rocm:nightly",
            "PYTHONPATH=/workspace", f"HF_HOME={HF_CACHE_DIR}"} <= set(env)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert f"HARNESS_GIT_COMMIT={commit}" in env
    assert "HARNESS_IMAGE_DIGEST" in env  # by name: resolved by env() just before the run


def test_buildkite_identity_passes_by_name_when_present(tmp_path, group_file):
    environ = {"HOME": str(tmp_path), "BUILDKITE_BUILD_NUMBER": "42", "BUILDKITE_JOB_ID": "j"}
    env = pairs(launch_for("cuda", tmp_path, group_file, environ=environ).argv(), "-e")
    assert "BUILDKITE_BUILD_NUMBER" in env and "BUILDKITE_JOB_ID" in env
    assert "BUILDKITE_COMMIT" not in env


def test_tiny_models_get_the_model_cache_mounted(tmp_path, group_file):
    environ = {"HOME": str(tmp_path), "HARNESS_MODEL_CACHE": str(tmp_path / "models")}
    argv = launch_for("rocm", tmp_path, group_file, environ=environ,
                      model_source="tiny").argv()
    assert f"{tmp_path}/models:{MODEL_CACHE_DIR}:rw" in pairs(argv, "-v")
    assert f"HARNESS_MODEL_CACHE={MODEL_CACHE_DIR}" in pairs(argv, "-e")


def test_files_outside_the_checkout_are_mounted_readonly(tmp_path, group_file):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "platforms.yaml").write_text((CASES / "platforms.yaml").read_text())
    request = request_for("rocm", tmp_path)
    request.platforms_file = outside / "platforms.yaml"
    launch = ContainerLaunch(request, environ={"HOME": str(tmp_path)}, group_file=group_file,
                             sysfs=tmp_path)
    argv = launch.argv()
    assert f"{outside}:/inputs/0:ro" in pairs(argv, "-v")
    assert "/inputs/0/platforms.yaml" in argv


def test_podman_platform_flags_runtime_network_ulimits_memory_mounts(tmp_path, group_file):
    argv = launch_for("cpu", tmp_path, group_file, launcher="container", engine="podman",
                      image="localhost/x:1", runtime="runc", network="host", memory="3g",
                      ulimits={"nofile": "20000:20000", "nproc": "8192:8192"},
                      readonly_mounts=["/opt/venv:/opt/venv"]).argv()
    assert argv[:4] == ["podman", "--runtime", "runc", "run"]  # a global option for podman
    assert pairs(argv, "--network") == ["host"]
    assert pairs(argv, "--ulimit") == ["nofile=20000:20000", "nproc=8192:8192"]
    assert pairs(argv, "--memory") == ["3g"] and pairs(argv, "--memory-swap") == ["3g"]
    assert "/opt/venv:/opt/venv:ro" in pairs(argv, "-v")
    assert not pairs(argv, "--device") and not pairs(argv, "--gpus")  # a CPU platform


def test_docker_takes_the_runtime_as_a_run_option(tmp_path, group_file):
    argv = launch_for("cuda", tmp_path, group_file, runtime="nvidia").argv()
    assert argv[:4] == ["docker", "run", "--runtime", "nvidia"]


def test_each_launch_has_its_own_name_and_an_inner_deadline_after_the_hosts(tmp_path, group_file):
    first, second = (launch_for("rocm", tmp_path, group_file) for _ in range(2))
    assert first.name != second.name and first.name.startswith("harness-rocm-build-42-")
    argv = first.argv()
    assert pairs(argv, "--name") == [first.name]
    deadline = argv[argv.index("--signal=INT") + 1]
    assert deadline == f"{60 * 60 + INNER_DEADLINE_MARGIN_S}s"
    assert shlex.split(first.reproduce()) == argv


# ---------------------------------------------------------------- GPU selection


def test_parallel_jobs_map_to_disjoint_gpu_ranges():
    assert [gpus_for_parallel_job(i, 2) for i in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert gpus_for_parallel_job(7, 1, total=8) == [7]
    with pytest.raises(ValueError, match="parallel job 4 needs GPUs 8-9 .* has 8"):
        gpus_for_parallel_job(4, 2, total=8)


def test_gpu_selection_order_cli_then_parallel_job_then_platform():
    rocm = PLATFORMS["rocm"].model_copy(update={"gpus_per_job": 2})
    assert select_gpus("5", rocm, 3) == [5]
    assert select_gpus(None, rocm, 3) == [6, 7]
    assert select_gpus(None, rocm, None) is None  # the platform's "all"
    assert select_gpus(None, PLATFORMS["rocm"], 3) is None  # no gpus_per_job: not sharded
    assert select_gpus("0", PLATFORMS["cpu"], 3) is None


def test_parallel_job_index_prefers_the_shard_index_over_buildkites():
    job = {"BUILDKITE_PARALLEL_JOB": "3"}
    assert parallel_job_index(1, job) == 1
    assert parallel_job_index(None, job) == 3
    assert parallel_job_index(None, {}) is None


def test_shards_keep_their_container_logs_apart_fake_inspect(tmp_path, group_file):
    request = request_for("rocm", tmp_path)
    request.shard = 2
    launch = ContainerLaunch(request, environ={"HOME": str(tmp_path)}, group_file=group_file,
                             sysfs=tmp_path)
    fake_engine(launch, {"Running": False, "ExitCode": 0}, [])
    launch.on_stop()
    assert (tmp_path / "results/build-42/rocm/container-2.log").is_file()


def test_parallel_job_on_a_fake_kfd_node_checks_the_gpu_count(tmp_path, group_file, kfd_sysfs):
    environ = {"HOME": str(tmp_path), "BUILDKITE_PARALLEL_JOB": "1"}
    argv = launch_for("rocm", tmp_path, group_file, kfd_sysfs, environ=environ,
                      gpus_per_job=2).argv()
    assert pairs(argv, "--device")[1:] == ["/dev/dri/renderD131", "/dev/dri/renderD132"]
    environ["BUILDKITE_PARALLEL_JOB"] = "2"
    with pytest.raises(SpecError, match="parallel job 2 needs GPUs 4-5"):
        launch_for("rocm", tmp_path, group_file, kfd_sysfs, environ=environ, gpus_per_job=2)


@pytest.mark.parametrize("text", ["", "x", "0,", "1,,2", "-1", "0, 1 ,"])
def test_bad_gpu_lists_are_rejected(text):
    with pytest.raises(ValueError, match="expected 'all' or comma-separated"):
        parse_gpus(text)


def test_repeated_gpu_index_is_rejected():
    with pytest.raises(ValueError, match="repeat"):
        parse_gpus("1,1")


# ---------------------------------------------------------------- lifecycle without an engine


def test_on_stop_is_safe_when_the_container_never_started_no_engine_installed(tmp_path, group_file):
    launch = launch_for("rocm", tmp_path, group_file, engine="no-such-engine-binary")
    launch.on_stop()
    launch.on_stop()  # twice is fine
    outcome = WorkerOutcome(None, True, False, 1.0, tmp_path / "worker.log")
    details = launch.describe(outcome)
    assert details["oom"] is False and details["exit_code"] is None and details["removed"]
    assert details["fingerprint"]["image"] == "vllm/vllm-openai-rocm:nightly"


def fake_engine(launch: ContainerLaunch, state: dict, calls: list):
    """Stand in for `docker inspect/kill/wait/logs/rm`: no engine here (fake)."""
    removed = []

    def call(*args):
        calls.append(args)
        if args[0] == "inspect" and not removed:
            out = json.dumps([{"State": state, "Image": "sha256:abc"}])
            return subprocess.CompletedProcess(args, 0, out, "")
        if args[0] == "rm":
            removed.append(True)
        if args[0] == "logs":
            return subprocess.CompletedProcess(args, 0, f"line\ntoken {SECRET}\n", "")
        return subprocess.CompletedProcess(args, 1, "", "no such object")

    launch._call = call  # type: ignore[method-assign]


@pytest.mark.parametrize(("state", "timed_out", "oom"), [
    ({"OOMKilled": True, "ExitCode": 137, "Running": False}, False, True),
    ({"OOMKilled": False, "ExitCode": 137, "Running": False}, False, True),  # podman+runc, cg v1
    ({"OOMKilled": False, "ExitCode": 137, "Running": False}, True, False),  # our own kill
    ({"OOMKilled": False, "ExitCode": 1, "Running": False}, False, False),
])
def test_describe_classifies_oom_from_fake_inspect(tmp_path, group_file, state, timed_out, oom,
                                                   monkeypatch):
    monkeypatch.setattr(container_module, "REMOVAL_SETTLE_S", 0.6)
    launch = launch_for("rocm", tmp_path, group_file)
    calls: list = []
    fake_engine(launch, state, calls)
    outcome = WorkerOutcome(None if timed_out else state["ExitCode"], timed_out, False, 1.0,
                            tmp_path / "worker.log")
    launch.on_stop()
    details = launch.describe(outcome)
    assert (details["oom"], details["exit_code"], details["removed"]) == (
        oom, state["ExitCode"], True)
    names = [c[0] for c in calls]
    # an unflagged SIGKILL is watched a moment for someone else's removal (more inspects)
    watched = state["ExitCode"] == 137 and not state["OOMKilled"]
    head = 1 + next(i for i, name in enumerate(names[1:]) if name != "inspect")
    assert (head > 1) == watched
    assert ["inspect", *names[head:]] == ["inspect", "logs", "rm", "inspect", "image"]


def test_a_container_removed_by_someone_else_after_its_kill_is_lost_not_oom(
        tmp_path, group_file, monkeypatch):
    """`rm -f` by someone else kills (exit 137, no OOM flag) and removes a moment later: the
    first inspect sees the killed container, a later one sees nothing (fake engine)."""
    monkeypatch.setattr(container_module, "REMOVAL_SETTLE_S", 2.0)
    launch = launch_for("rocm", tmp_path, group_file)
    state = {"OOMKilled": False, "ExitCode": 137, "Running": False, "Status": "exited"}
    calls: list = []
    fake_engine(launch, state, calls)
    real_call = launch._call

    def call(*args):  # the janitor's removal lands after the first inspect
        if args[0] == "inspect" and [c[0] for c in calls].count("inspect") >= 1:
            calls.append(args)
            return subprocess.CompletedProcess(args, 1, "", "no such object")
        return real_call(*args)

    launch._call = call  # type: ignore[method-assign]
    outcome = WorkerOutcome(137, False, False, 1.0, tmp_path / "worker.log")
    launch.on_stop()
    details = launch.describe(outcome)
    assert details["oom"] is False
    assert details["failure"][0] == "container-lost", details
    log = (tmp_path / "results/build-42/rocm/container.log").read_text()
    assert "line" in log and SECRET not in log


def test_on_stop_kills_a_container_that_still_runs_fake_inspect(tmp_path, group_file):
    launch = launch_for("rocm", tmp_path, group_file)
    calls: list = []
    fake_engine(launch, {"Running": True, "ExitCode": 0}, calls)
    launch.on_stop()
    assert [c[0] for c in calls][:4] == ["inspect", "kill", "wait", "inspect"]
    assert ("rm", "-f", launch.name) in calls


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize("platform", ["rocm", "cuda"])
def test_cli_dry_run_prints_the_command_without_docker_or_gpu(tmp_path, platform):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_TOKEN": SECRET}
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--platform", platform,
                           "--dry-run", "--gpus", "0,1", "--results", str(tmp_path / "r")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    argv = shlex.split(done.stdout.strip().splitlines()[-1])
    assert argv[:2] == ["docker", "run"] and "-e" in argv and "HF_TOKEN" in argv
    assert SECRET not in done.stdout + done.stderr
    assert not (tmp_path / "r").exists()  # nothing ran, nothing was written


# ---------------------------------------------------------------- user, caches, image, client


def test_runs_as_the_results_owner_with_a_writable_home(tmp_path, group_file):
    (tmp_path / "results").mkdir()
    owner = (tmp_path / "results").stat()
    argv = launch_for("rocm", tmp_path, group_file).argv()
    assert pairs(argv, "--user") == [f"{owner.st_uid}:{owner.st_gid}"]
    env = pairs(argv, "-e")
    assert "HOME=/tmp" in env and f"USER=uid{owner.st_uid}" in env
    assert pairs(argv, "--pull") == [] and "--pull=never" in argv  # prepare() pulled, if at all


def test_results_dir_not_yet_made_takes_its_parents_owner(tmp_path, group_file):
    argv = launch_for("rocm", tmp_path, group_file).argv()  # tmp_path/results does not exist
    info = tmp_path.stat()
    assert pairs(argv, "--user") == [f"{info.st_uid}:{info.st_gid}"]


@pytest.mark.parametrize(("name", "miopen"), [("rocm", True), ("cuda", False)])
def test_compile_caches_persist_per_platform_and_image(tmp_path, group_file, name, miopen):
    environ = {"HOME": str(tmp_path), "HARNESS_COMPILE_CACHE": str(tmp_path / "cc")}
    launch = launch_for(name, tmp_path, group_file, environ=environ, image="reg:5000/ns/x:tag")
    argv = launch.argv()
    host = tmp_path / "cc" / name / "reg_5000_ns_x_tag"
    assert launch.host_compile_cache() == host
    assert f"{host}:{COMPILE_CACHE_DIR}:rw" in pairs(argv, "-v")
    env = pairs(argv, "-e")
    assert {f"VLLM_CACHE_ROOT={COMPILE_CACHE_DIR}/vllm",
            f"TRITON_CACHE_DIR={COMPILE_CACHE_DIR}/triton",
            f"TORCHINDUCTOR_CACHE_DIR={COMPILE_CACHE_DIR}/inductor"} <= set(env)
    assert (f"MIOPEN_USER_DB_PATH={COMPILE_CACHE_DIR}/miopen" in env) == miopen
    launch.env()  # prepares the host side: the cache directories exist afterwards
    assert (host / "vllm").is_dir() and (host / "triton").is_dir()


def test_image_option_overrides_the_platforms_image(tmp_path, group_file):
    launch = launch_for("rocm", tmp_path, group_file, image="vllm/vllm-openai-rocm:nightly-abc")
    argv = launch.argv()
    assert argv[argv.index("--kill-after=30s") - 1] == "vllm/vllm-openai-rocm:nightly-abc"
    assert "HARNESS_IMAGE=vllm/vllm-openai-rocm:nightly-abc" in pairs(argv, "-e")


def test_image_name_follows_registry_and_namespace_settings(tmp_path, group_file):
    environ = {"HOME": str(tmp_path), "HARNESS_REGISTRY": "ghcr.io",
               "HARNESS_NAMESPACE": "my-team"}
    assert launch_for("cuda", tmp_path, group_file, environ=environ).image == \
        "vllm/vllm-openai:nightly"  # the shipped platform runs vLLM's published nightly
    launch = ContainerLaunch(request_for("cuda", tmp_path, image=None), environ=environ,
                             group_file=group_file, sysfs=tmp_path / "no-sys")
    assert launch.image == "ghcr.io/my-team/vllm-harness:cuda-latest"  # no image: the harness's


def test_engine_client_binary_and_daemon_are_settings(tmp_path, group_file):
    environ = {"HOME": str(tmp_path), "HARNESS_DOCKER": "/usr/bin/docker",
               "DOCKER_HOST": "unix:///tmp/x.sock"}
    launch = launch_for("rocm", tmp_path, group_file, environ=environ)
    assert launch.argv()[:2] == ["/usr/bin/docker", "run"]
    assert launch.env()["DOCKER_HOST"] == "unix:///tmp/x.sock"  # the client's own setting
    from_platform = launch_for("rocm", tmp_path, group_file, client="/opt/docker/bin/docker")
    assert from_platform.argv()[0] == "/opt/docker/bin/docker"
    podman = launch_for("cpu-podman", tmp_path, group_file, environ={
        "HOME": str(tmp_path), "HARNESS_PODMAN": "/usr/local/bin/podman"})
    assert podman.argv()[:4] == ["/usr/local/bin/podman", "--runtime", "runc", "run"]


@pytest.mark.parametrize(("code", "log", "state", "expected"), [
    (125, "docker: Error response from daemon: No such image: x:y.", {}, "image-missing"),
    (125, "docker: Error response from daemon: error gathering device information", {},
     "container-start"),
    (126, "timeout: failed to run command 'python3': Permission denied", {"ExitCode": 126},
     "container-start"),
    (127, "timeout: failed to run command 'python3': No such file or directory",
     {"ExitCode": 127}, "command-not-found"),
    (137, "worker running", {}, "container-lost"),  # no container to inspect afterwards
    (1, "1 failed", {"ExitCode": 1, "OOMKilled": False}, None),
])
def test_engine_exit_codes_are_classified_fake_inspect(tmp_path, group_file, code, log, state,
                                                       expected):
    launch = launch_for("rocm", tmp_path, group_file)
    calls: list = []
    if state:
        fake_engine(launch, {**state, "Running": False}, calls)
    else:  # the container does not exist (never created, or removed by someone else)
        launch._call = lambda *args: subprocess.CompletedProcess(args, 1, "", "no such object")
    log_path = tmp_path / "worker.log"
    log_path.write_text(log + "\n")
    details = launch.describe(WorkerOutcome(code, False, False, 1.0, log_path))
    assert details.get("failure", (None,))[0] == expected
    if expected == "image-missing":
        assert "harness image build --platform rocm" in details["failure"][1]
    assert details["oom"] is False


def test_cli_image_on_a_local_platform_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--platform", "cpu",
                           "--image", "x/y:z", "--results", str(tmp_path / "r")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--image" in done.stderr and "cpu" in done.stderr
    assert not (tmp_path / "r").exists()


def test_pull_policy_option_overrides_the_platforms(tmp_path, group_file):
    assert launch_for("rocm", tmp_path, group_file).pull == "always"  # tonight's nightly
    launch = ContainerLaunch(request_for("rocm", tmp_path), environ={"HOME": str(tmp_path)},
                             group_file=group_file, sysfs=tmp_path / "no-sys", pull="never")
    assert launch.pull == "never"
    assert launch_for("cpu-podman", tmp_path, group_file).pull == "never"


def test_gpu_flags_replace_the_accelerators_device_flags(tmp_path, group_file):
    """A platform's gpu_flags replace the device flags (a runtime that wants others, or none
    where the device cannot exist); the GPU selection is still checked."""
    default = launch_for("rocm", tmp_path, group_file).argv()
    assert "/dev/kfd" in default
    replaced = launch_for("rocm", tmp_path, group_file, gpu_flags=["--device", "/dev/null"])
    argv = replaced.argv()
    assert "/dev/kfd" not in argv and "--group-add" not in argv
    assert pairs(argv, "--device") == ["/dev/null"]


def test_retry_is_pinned_to_the_digest_the_first_attempt_ran(tmp_path, group_file):
    """A moving tag (vLLM's nightly) may move between attempts: the retry runs the digest."""
    launch = launch_for("rocm", tmp_path, group_file)
    assert launch.pinned() is None  # not prepared: nothing ran yet
    digest = "vllm/vllm-openai-rocm@sha256:" + "ab" * 32
    launch._image = {"Id": "sha256:" + "cd" * 32, "RepoDigests": [digest]}
    assert launch.pinned() == (digest, "missing")
    retry = launch_for("rocm", tmp_path, group_file, image=launch.pinned()[0])
    assert retry.image == digest and digest in retry.argv()
