"""Launch the worker inside a container: one `docker run` (or `podman run`) per platform and run.

The worker is the same pytest command as on the host (``launch.worker.pytest_argv``), with the
container's paths: the checkout read-only at /workspace (first on PYTHONPATH, so the harness
under test is the checkout's, whatever the image installed), the results directory read-write
at /results, the Hugging Face cache and, for tiny models, the model cache. Environment passes
by name (``-e HF_TOKEN``): the engine client reads the value from its own environment, so no
secret value is ever in the argument list, the reproduce command or a log.

Lifecycle, and why there is no ``--rm``: ``--rm`` deletes the container the moment it exits,
racing the ``inspect`` that tells an OOM kill (State.OOMKilled, or exit 137 the harness did not
cause) from a crash. So the container runs without it; ``on_stop`` (called by ``run_worker``
after the client exits, on the deadline, Ctrl-C or SIGTERM) kills it if it still runs,
inspects it, saves its log and removes it by its unique name. A second deadline inside the
container (``timeout``, later than the host's) bounds it even if the harness itself is killed,
and labels let a janitor find leftovers (``<engine> ps -a --filter label=vllm-harness.run``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.launch.gpus import (GROUP_FILE, SYSFS, count_gpus, gpu_args,
                                 parallel_job_index, select_gpus)
from harness.launch.local import WorkerRequest
from harness.models import default_cache_root
from harness.launch.worker import WorkerOutcome, pytest_argv
from harness.secrets import redact
from harness.spec import SpecError
from harness.worker.fingerprint import BUILDKITE_FIELDS, git_commit

REPO_DIR = "/workspace"
RESULTS_DIR = "/results"
INPUTS_DIR = "/inputs"  # case or platform files from outside the checkout
HF_CACHE_DIR = "/root/.cache/huggingface"
MODEL_CACHE_DIR = "/root/.cache/vllm-harness/models"
CONTAINER_LOG = "container.log"
LABEL = "vllm-harness.run"
ENGINE_CALL_TIMEOUT_S = 60
# The container's own deadline comes this long after the host's, so the host's (which
# interrupts gracefully and classifies the result as a timeout) normally fires first.
INNER_DEADLINE_MARGIN_S = 300
INNER_KILL_AFTER_S = 30
SIGKILL_EXIT = 137
# Passed by name when the host has them: CI identity for the fingerprint, test mutations.
BY_NAME = (*BUILDKITE_FIELDS.values(), "BUILDKITE_PARALLEL_JOB", "HARNESS_MUTATIONS")


class ContainerLaunch:
    def __init__(self, request: WorkerRequest, engine: str | None = None,
                 gpus: str | None = None, *, environ: dict[str, str] | None = None,
                 group_file: Path = GROUP_FILE, sysfs: Path = SYSFS,
                 keep_container: bool = False):
        self.request = request
        self.platform = request.platform
        self.engine = engine or self.platform.engine
        self.environ = dict(os.environ if environ is None else environ)
        try:
            self.gpus = select_gpus(gpus, self.platform,
                                    parallel_job_index(request.shard, self.environ),
                                    total=count_gpus(self.platform.accelerator, sysfs))
            self._gpu_args = gpu_args(self.platform.accelerator, self.engine, self.gpus,
                                      group_file, sysfs)
        except ValueError as exc:
            raise SpecError("--gpus" if gpus else self.platform.name, None, "gpus",
                            str(exc)) from None
        self.name = _container_name(self.platform.name, request.run_id)
        self.commit = git_commit(request.repo)
        self._mounts, self._paths = self._plan_mounts()
        self._state: dict[str, Any] | None = None
        self._image: dict[str, Any] | None = None
        self._stopped = False
        self.removed = False
        self.keep_container = keep_container  # --keep-container: release() decides after the run
        self.kept = False

    # ------------------------------------------------------------ the command

    def engine_prefix(self) -> list[str]:
        # Podman takes the OCI runtime as a global option; docker as a `run` option.
        if self.engine == "podman" and self.platform.runtime:
            return ["podman", "--runtime", self.platform.runtime]
        return [self.engine]

    def argv(self) -> list[str]:
        p, r = self.platform, self.request
        args = [*self.engine_prefix(), "run"]
        if self.engine == "docker" and p.runtime:
            args += ["--runtime", p.runtime]
        args += ["--name", self.name, "--label", f"{LABEL}={r.run_id}",
                 "--label", f"vllm-harness.platform={p.name}",
                 "--init", "--workdir", REPO_DIR, "--entrypoint", "timeout"]
        if p.network:
            args += ["--network", p.network]
        args += ["--ipc=host"] if p.ipc == "host" else ["--ipc=private"]
        if p.ipc != "host" and p.shm_size:  # with the host's IPC namespace, /dev/shm is the host's
            args += ["--shm-size", p.shm_size]
        for name, value in p.ulimits.items():
            args += ["--ulimit", f"{name}={value}"]
        if p.memory:  # swap equal to memory: no swap, so an overrun is an OOM kill, not a crawl
            args += ["--memory", p.memory, "--memory-swap", p.memory]
        args += self._gpu_args
        for host, container, mode in self._mounts:
            args += ["-v", f"{host}:{container}:{mode}"]
        args += self._env_args()
        args.append(p.image or "")
        deadline = p.timeout_minutes * 60 + INNER_DEADLINE_MARGIN_S
        args += [f"--kill-after={INNER_KILL_AFTER_S}s", "--signal=INT", f"{deadline}s"]
        return args + self._worker_argv()

    def _worker_argv(self) -> list[str]:
        r, paths = self.request, self._paths
        return pytest_argv(
            self.platform.python, platform=self.platform.name,
            case_files=[paths[p] for p in r.case_files], results=RESULTS_DIR,
            run_id=r.run_id, keyword=r.keyword,
            junit=f"{RESULTS_DIR}/{r.run_id}/{self.platform.name}/{r.junit_name()}",
            platforms_file=paths[r.platforms_file],
            extra=["--rootdir", REPO_DIR, *r.worker_options()])

    def _env_args(self) -> list[str]:
        p = self.platform
        fixed = {"HARNESS_IN_CONTAINER": "1", "HARNESS_IMAGE": p.image or "",
                 "PYTHONPATH": REPO_DIR, "PYTHONDONTWRITEBYTECODE": "1",
                 "PYTHONUNBUFFERED": "1", "HF_HOME": HF_CACHE_DIR}
        if self.commit:
            fixed["HARNESS_GIT_COMMIT"] = self.commit
        if p.model_source == "tiny":
            fixed["HARNESS_MODEL_CACHE"] = MODEL_CACHE_DIR
        fixed.update(p.env)  # the platform's own values win (they are checked not to be secrets)
        args = [arg for k, v in fixed.items() for arg in ("-e", f"{k}={v}")]
        # By name only: the value comes from the client's environment (see env()).
        names = [*p.pass_env, "HARNESS_IMAGE_DIGEST",
                 *(n for n in BY_NAME if n in self.environ)]
        for name in dict.fromkeys(names):
            args += ["-e", name]
        return args

    def _plan_mounts(self) -> tuple[list[tuple[str, str, str]], dict[Path, str]]:
        r, p = self.request, self.platform
        repo = r.repo.resolve()
        mounts = [(str(repo), REPO_DIR, "ro"), (str(r.results_dir.resolve()), RESULTS_DIR, "rw"),
                  (str(self.host_hf_cache()), HF_CACHE_DIR, "rw")]
        if p.model_source == "tiny":
            mounts.append((str(self.host_model_cache()), MODEL_CACHE_DIR, "rw"))
        paths: dict[Path, str] = {}
        outside: dict[Path, str] = {}  # host directory -> where it is mounted
        for path in [*r.case_files, r.platforms_file]:
            full = path.resolve()
            if full.is_relative_to(repo):
                paths[path] = f"{REPO_DIR}/{full.relative_to(repo).as_posix()}"
                continue
            target = outside.setdefault(full.parent, f"{INPUTS_DIR}/{len(outside)}")
            paths[path] = f"{target}/{full.name}"
        mounts += [(str(host), target, "ro") for host, target in outside.items()]
        for mount in p.readonly_mounts:
            host, container = mount.split(":")
            mounts.append((host, container, "ro"))
        return mounts, paths

    def host_hf_cache(self) -> Path:
        return Path(self.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")

    def host_model_cache(self) -> Path:
        return default_cache_root(self.environ)

    def reproduce(self) -> str:
        from harness.execute import shell_join

        return shell_join(self.argv())

    # ------------------------------------------------------------ the run

    def env(self) -> dict[str, str]:
        """The client's environment; called right before the run, so it also prepares it.

        Podman refuses a bind mount whose source is missing (docker would create it as root).
        The image digest goes in by name, like every other value we did not write ourselves.
        """
        caches = [self.host_hf_cache()]
        if self.platform.model_source == "tiny":
            caches.append(self.host_model_cache())
        for cache in caches:
            cache.mkdir(parents=True, exist_ok=True)
        env = dict(self.environ)
        digest = self.image_digest()
        if digest:
            env["HARNESS_IMAGE_DIGEST"] = digest
        return env

    def image_digest(self) -> str | None:
        """Registry digest, else the local image id. Asked again after the run when it failed
        before it (docker pulls a missing image during `run`)."""
        if self._image is None:
            self._image = _first(self._call("image", "inspect", self.platform.image or ""))
        if not self._image:
            return None
        digests = self._image.get("RepoDigests") or []
        return digests[0] if digests else self._image.get("Id")

    def on_stop(self) -> None:
        """Kill (if still running), inspect, keep the log, remove. Safe to call twice or never
        having started; every engine call has a timeout."""
        if self._stopped:
            return
        self._stopped = True
        state = self.inspect()
        if state is None:  # never created (the client failed first) or already gone
            self.removed = not self._exists()
            return
        if state.get("State", {}).get("Running"):
            self._call("kill", self.name)
            self._call("wait", self.name)
            state = self.inspect() or state
        self._state = state
        self._save_log()
        if self.keep_container:  # stopped, kept until release() knows whether a job failed
            self.kept = True
            return
        self._call("rm", "-f", self.name)
        self.removed = not self._exists()

    def release(self, failed: bool) -> str:
        """--keep-container: remove the stopped container unless a job failed; then say how to
        look inside it. Returns the lines to print ("" when nothing was kept)."""
        if not self.kept:
            return ""
        if not failed:
            self._call("rm", "-f", self.name)
            self.removed, self.kept = not self._exists(), False
            return ""
        engine = " ".join(self.engine_prefix())
        debug_image = f"localhost/harness-debug:{self.name.removeprefix('harness-')}"
        return "\n".join([
            f"kept container {self.name} (stopped) for debugging:",
            f"  logs:   {engine} logs {self.name}",
            f"  rerun:  {engine} start -ai {self.name}",
            f"  shell:  {engine} commit {self.name} {debug_image} && {engine} run --rm -it "
            f"--entrypoint /bin/sh {debug_image}",
            f"  remove: {engine} rm {self.name}   (or: harness prune)"])

    def describe(self, outcome: WorkerOutcome) -> dict[str, Any]:
        self.on_stop()  # idempotent: inspect before the container is gone
        state = (self._state or {}).get("State", {})
        exit_code = state.get("ExitCode", outcome.returncode) if state else outcome.returncode
        # Exit 137 is SIGKILL. The harness's own kill (deadline, Ctrl-C) explains it; otherwise
        # the memory cgroup's OOM killer is the likely sender: podman with runc on cgroup v1
        # reports OOMKilled=false for a real OOM kill (seen here), so the flag alone is not
        # enough.
        killed_by_us = outcome.timed_out or outcome.interrupted
        oom = bool(state.get("OOMKilled")) or (exit_code == SIGKILL_EXIT and not killed_by_us)
        image_id = (self._state or {}).get("Image")
        return {"oom": oom, "exit_code": exit_code, "container": self.name,
                "removed": self.removed,
                "fingerprint": {"image": self.platform.image,
                                "image_digest": self.image_digest() or image_id,
                                "container": True}}

    def inspect(self) -> dict[str, Any] | None:
        return _first(self._call("inspect", self.name))

    def _exists(self) -> bool:
        done = self._call("inspect", self.name)
        return done is not None and done.returncode == 0

    def _save_log(self) -> None:
        done = self._call("logs", self.name)
        if done is None:
            return
        r = self.request
        path = r.results_dir / r.run_id / self.platform.name / CONTAINER_LOG.replace(
            ".log", f"{r.file_suffix()}.log")  # shards of one platform share its directory
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(redact(done.stdout + done.stderr, self.environ))

    def _call(self, *args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run([*self.engine_prefix(), *args], capture_output=True, text=True,
                                  errors="replace", stdin=subprocess.DEVNULL,
                                  timeout=ENGINE_CALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return None


def _first(done: subprocess.CompletedProcess | None) -> dict[str, Any] | None:
    """The first object of an `inspect` answer (a JSON list), or None."""
    if done is None or done.returncode != 0:
        return None
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        return None
    return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None


def _container_name(platform: str, run_id: str) -> str:
    # Unique per launch (a retried job must not collide with a leftover); engines accept
    # [a-zA-Z0-9][a-zA-Z0-9_.-]*, which platform names and run ids already satisfy.
    return f"harness-{platform}-{run_id}-{int(time.time()) % 100000:05d}{secrets.token_hex(3)}"
