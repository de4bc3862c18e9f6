"""Launch the worker inside a container: one `docker run` (or `podman run`) per platform and run.

The worker is the same pytest command as on the host (``launch.start_worker.pytest_argv``), with the
container's paths: the checkout read-only at /workspace (first on PYTHONPATH, so the harness
under test is the checkout's, whatever the image installed), the results directory read-write
at /results, the Hugging Face cache and, for tiny models, the model cache. The image needs
nothing but vLLM: pytest (which vLLM's images lack) comes from a read-only folder built on
this host (``launch.worker_deps``), after the image's own packages on ``sys.path``.
Environment passes by name (``-e HF_TOKEN``): the engine client reads the value from its own
environment, so no secret value is ever in the argument list, the reproduce command or a log.

Lifecycle, and why there is no ``--rm``: ``--rm`` deletes the container the moment it exits,
racing the ``inspect`` that tells an OOM kill (State.OOMKilled, or exit 137 the harness did not
cause) from a crash. So the container runs without it; ``on_stop`` (called by ``run_worker``
after the client exits, on the deadline, Ctrl-C or SIGTERM) kills it if it still runs,
inspects it, saves its log and removes it by its unique name. A second deadline inside the
container (``timeout``, later than the host's) bounds it even if the harness itself is killed,
and labels let a janitor find leftovers (``<engine> ps -a --filter label=vllm-harness.run``).

Before the run, ``prepare`` makes sure the image is here (pulling it when the platform says so;
``run --pull=never`` then runs exactly what was inspected): a missing image or a registry that
fails is a clear error naming the image and the command that builds or pulls it, in seconds.
The container runs as the owner of the results directory (``--user uid:gid``, HOME=/tmp), so
nothing it writes is root's; compile caches (vLLM, Triton, inductor, MIOpen) persist in a host
directory per platform and image.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from harness.host import images

from harness.host.launch.agent_gpus import agent_pinning, pinned_args, share_for_parallel_job
from harness.host.launch.gpus import (GROUP_FILE, SYSFS, count_gpus, gpu_args,
                                 parallel_job_index, select_gpus)
from harness.host.launch.container_exit import (SIGKILL_EXIT, being_removed, classify_exit,
                                                oom_killed)
from harness.host.launch.local import WorkerRequest
from harness.host.launch.ownership import chown, hand_over, make_dirs, owner_of
from harness.models import default_cache_root
from harness.host.launch.start_worker import WorkerOutcome, pytest_argv
from harness.host.launch.worker_deps import ENV_NAME as WORKER_DEPS_ENV
from harness.host.launch.worker_deps import MOUNT_DIR as WORKER_DEPS_DIR, worker_deps_dir
from harness import proc
from harness.results import CONTAINER_LOG
from harness.secrets import redact
from harness.spec.case import SpecError
from harness.runinfo import BUILDKITE_FIELDS, HOSTNAME_ENV, git_env, hostname

REPO_DIR = "/workspace"
RESULTS_DIR = "/results"
INPUTS_DIR = "/inputs"  # case or platform files from outside the checkout
# Caches live outside /root: the container runs as the results' owner, who may not be root.
HF_CACHE_DIR = "/cache/huggingface"
MODEL_CACHE_DIR = "/cache/vllm-harness/models"
COMPILE_CACHE_DIR = "/cache/compile"
TESTS_CACHE_DIR = "/cache/vllm-tests"  # vLLM tests trees (vllm_tests cases), read-only
CONTAINER_HOME = "/tmp"  # writable by any uid in any image
# Compile caches, each under COMPILE_CACHE_DIR: vLLM's cache root (torch.compile artifacts),
# inductor's and Triton's kernels, and on ROCm MIOpen's user database and kernel cache.
COMPILE_CACHES = {"VLLM_CACHE_ROOT": "vllm", "TORCHINDUCTOR_CACHE_DIR": "inductor",
                  "TRITON_CACHE_DIR": "triton"}
ROCM_COMPILE_CACHES = {"MIOPEN_USER_DB_PATH": "miopen", "MIOPEN_CUSTOM_CACHE_DIR": "miopen"}
LABEL = "vllm-harness.run"
# The container's own deadline comes this long after the host's, so the host's (which
# interrupts gracefully and classifies the result as a timeout) normally fires first.
INNER_DEADLINE_MARGIN_S = 300
INNER_KILL_AFTER_S = 30
# How long a container killed by a SIGKILL we did not send is watched for removal by someone
# else (whose `rm -f` kills first and removes a moment later) before it counts as an OOM kill.
REMOVAL_SETTLE_S = 5.0
# Passed by name when the host has them: CI identity for the fingerprint, test mutations.
BY_NAME = (*BUILDKITE_FIELDS.values(), "BUILDKITE_PARALLEL_JOB", "HARNESS_MUTATIONS")


class ContainerLaunch:
    def __init__(self, request: WorkerRequest, engine: str | None = None,
                 gpus: str | None = None, *, environ: dict[str, str] | None = None,
                 group_file: Path = GROUP_FILE, sysfs: Path = SYSFS, image: str | None = None,
                 pull: str | None = None, keep_container: bool = False):
        self.request = request
        self.platform = request.platform
        self.engine = engine or self.platform.engine
        self.environ = dict(os.environ if environ is None else environ)
        self.image = images.platform_image(self.platform, self.environ, image)
        self.pull = pull or self.platform.pull  # always | missing | never
        self.user = owner_of(request.results_dir)
        try:
            job_index = parallel_job_index(request.shard, self.environ)
            # The agent's own pinning (its environment) wins over ranges and the platform.
            self.pinning = None if gpus else agent_pinning(self.platform.accelerator,
                                                           self.environ, sysfs)
            if self.pinning is not None:
                self.gpus = None
                devices = share_for_parallel_job(self.pinning.devices, job_index,
                                                 self.platform.gpus_per_job)
                self._gpu_args = pinned_args(self.platform.accelerator, self.engine, devices,
                                             group_file)
            else:
                self.gpus = select_gpus(gpus, self.platform, job_index,
                                        total=count_gpus(self.platform.accelerator, sysfs))
                self._gpu_args = gpu_args(self.platform.accelerator, self.engine, self.gpus,
                                          group_file, sysfs)
        except ValueError as exc:
            raise SpecError("--gpus" if gpus else self.platform.name, None, "gpus",
                            str(exc)) from None
        if self.platform.gpu_flags is not None:  # the selection is checked, the flags replaced
            self._gpu_args = list(self.platform.gpu_flags)
        self.name = _container_name(self.platform.name, request.run_id)
        self.git = git_env(request.repo, self.environ)  # one commit + dirty flag per run
        self._mounts, self._paths = self._plan_mounts()
        self._state: dict[str, Any] | None = None
        self._image: dict[str, Any] | None = None
        self._stopped = False
        self._failure: tuple[str, str] | None = None  # (failure class, message) found by us
        self.removed = False
        self.keep_container = keep_container  # --keep-container: release() decides after the run
        self.kept = False

    # ------------------------------------------------------------ the command

    def engine_prefix(self) -> list[str]:
        # Podman takes the OCI runtime as a global option; docker as a `run` option.
        return images.client(self.engine, self.platform, self.environ)

    def argv(self, command: list[str] | None = None) -> list[str]:
        """The container run of the worker, or of ``command`` in its place (same image,
        mounts, devices, environment and deadline)."""
        p, r = self.platform, self.request
        args = [*self.engine_prefix(), "run"]
        if self.engine == "docker" and p.runtime:
            args += ["--runtime", p.runtime]
        args += ["--name", self.name, "--label", f"{LABEL}={r.run_id}",
                 "--label", f"vllm-harness.platform={p.name}",
                 "--init", "--workdir", REPO_DIR, "--entrypoint", "timeout",
                 "--pull=never", "--user", "{}:{}".format(*self.user)]
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
        args.append(self.image)
        deadline = p.timeout_minutes * 60 + INNER_DEADLINE_MARGIN_S
        args += [f"--kill-after={INNER_KILL_AFTER_S}s", "--signal=INT", f"{deadline}s"]
        return args + (command if command is not None else self._worker_argv())

    def _worker_argv(self) -> list[str]:
        r, paths = self.request, self._paths
        return pytest_argv(
            self.platform.python, platform=self.platform.name,
            case_files=[paths[p] for p in r.case_files], results=RESULTS_DIR,
            run_id=r.run_id, keyword=r.keyword,
            junit=f"{RESULTS_DIR}/{r.run_id}/{self.platform.name}/{r.junit_name()}",
            platforms_file=paths[r.platforms_file],
            extra=["--rootdir", REPO_DIR, *r.worker_options(),
                   *(["--harness-vllm-tests", TESTS_CACHE_DIR] if self._tests_mounted() else [])])

    def reference_argv(self, source: str, device: str) -> list[str]:
        """The transformers reference of the request's cases (``python -m
        harness.worker.reference``) in this platform's image: its torch and transformers, its
        GPUs; nothing of them needed on the agent's host."""
        r = self.request
        job = {"cases": [self._paths[p] for p in r.case_files], "results": RESULTS_DIR,
               "run_id": r.run_id, "source": source, "device": device,
               "model_cache": MODEL_CACHE_DIR if self.platform.model_source == "tiny" else None}
        return self.argv([self.platform.python, "-m", "harness.worker.reference",
                          json.dumps(job)])

    def _tests_mounted(self) -> bool:
        return any(target == TESTS_CACHE_DIR for _, target, _ in self._mounts)

    def _env_args(self) -> list[str]:
        p = self.platform
        fixed = {"HARNESS_IN_CONTAINER": "1", "HARNESS_IMAGE": self.image,
                 "PYTHONPATH": self._pythonpath(), "PYTHONDONTWRITEBYTECODE": "1",
                 "PYTHONUNBUFFERED": "1", "HF_HOME": HF_CACHE_DIR,
                 WORKER_DEPS_ENV: WORKER_DEPS_DIR,
                 # Any uid: a writable HOME, and a user name for tools that ask (inductor).
                 "HOME": CONTAINER_HOME, "USER": f"uid{self.user[0]}",
                 HOSTNAME_ENV: hostname()}  # the node's name, not the container's
        fixed.update({name: f"{COMPILE_CACHE_DIR}/{sub}" for name, sub in self._compile_caches()})
        fixed.update(self.git)
        if p.model_source == "tiny":
            fixed["HARNESS_MODEL_CACHE"] = MODEL_CACHE_DIR
        fixed.update(p.env)  # the platform's own values win (they are checked not to be secrets)
        args = [arg for k, v in fixed.items() for arg in ("-e", f"{k}={v}")]
        # By name only: the value comes from the client's environment (see env()).
        names = [*p.pass_env, "HARNESS_IMAGE_DIGEST",
                 *(n for n in BY_NAME if self.environ.get(n))]  # empty: the image's own value
        for name in dict.fromkeys(names):
            args += ["-e", name]
        return args

    def _pythonpath(self) -> str:
        """The checkout first, then the image's own PYTHONPATH (an image may put packages or a
        ``sitecustomize`` there; ``-e PYTHONPATH`` would otherwise drop them). Known once the
        image is inspected (``prepare``): a dry run shows the checkout alone."""
        env = ((self._image or {}).get("Config") or {}).get("Env") or []
        own = next((e.split("=", 1)[1] for e in env if e.startswith("PYTHONPATH=")), "")
        return ":".join([REPO_DIR, *filter(None, own.split(":"))])

    def _plan_mounts(self) -> tuple[list[tuple[str, str, str]], dict[Path, str]]:
        r, p = self.request, self.platform
        repo = r.repo.resolve()
        mounts = [(str(repo), REPO_DIR, "ro"), (str(r.results_dir.resolve()), RESULTS_DIR, "rw"),
                  (str(self.host_hf_cache()), HF_CACHE_DIR, "rw"),
                  (str(self.host_compile_cache()), COMPILE_CACHE_DIR, "rw"),
                  (str(worker_deps_dir(self.environ)), WORKER_DEPS_DIR, "ro")]
        if p.model_source == "tiny":
            mounts.append((str(self.host_model_cache()), MODEL_CACHE_DIR, "rw"))
        if r.tests_cache is not None and r.tests_cache.is_dir():  # absent: the job says so
            mounts.append((str(r.tests_cache.resolve()), TESTS_CACHE_DIR, "ro"))
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
        from harness.models.hub import host_hf_home

        return host_hf_home(self.environ)

    def host_model_cache(self) -> Path:
        return default_cache_root(self.environ)

    def host_compile_cache(self) -> Path:
        """$HARNESS_COMPILE_CACHE or ~/.cache/vllm-harness/compile, then <platform>/<image>:
        one per platform and image name, so a moving tag (tonight's nightly) reuses last
        night's artifacts; vLLM and Triton key their entries by code and config themselves."""
        root = self.environ.get("HARNESS_COMPILE_CACHE")
        base = Path(root).expanduser() if root else \
            Path(self.environ.get("HOME") or Path.home()) / ".cache/vllm-harness/compile"
        return base / self.platform.name / re.sub(r"[^A-Za-z0-9_.-]", "_", self.image)

    def _compile_caches(self) -> list[tuple[str, str]]:
        caches = dict(COMPILE_CACHES)
        if self.platform.accelerator == "rocm":
            caches.update(ROCM_COMPILE_CACHES)
        return list(caches.items())

    def reproduce(self) -> str:
        return proc.shell_join(self.argv())

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
        compile_cache = self.host_compile_cache()
        make_dirs(compile_cache, self.user)
        if compile_cache.stat().st_uid != self.user[0]:  # the harness's own cache: follow the user
            hand_over(compile_cache, self.user)
        for _, sub in self._compile_caches():
            make_dirs(compile_cache / sub, self.user)
        r = self.request
        make_dirs(r.results_dir / r.run_id / self.platform.name, self.user)
        # execute() made the run's directories already (as root, when we are): the container
        # writes into them as the results' owner, so they must be that owner's first.
        chown(r.results_dir / r.run_id, self.user)
        hand_over(self._platform_dir(), self.user)
        env = dict(self.environ)
        digest = self.image_digest()
        if digest:
            env["HARNESS_IMAGE_DIGEST"] = digest
        return env

    def workdir(self) -> Path:
        """Where the engine client runs: the platform's results directory, not the checkout.
        Podman's conmon drops an empty ``oom`` marker file in its working directory when the
        container is OOM-killed; beside the results it is evidence, in a checkout it is litter."""
        return self._platform_dir()

    def prepare(self) -> str | None:
        """Make sure the image is here before the run; None when it is, else why not (the
        message names the image and the command that builds or pulls it, and is printed)."""
        p, prefix = self.platform, self.engine_prefix()
        present = self._inspect_image()
        if self.pull == "always" or (self.pull == "missing" and present is None):
            print(f"pulling {self.image} (platform {p.name}: pull {self.pull})", flush=True)
            pulled = images.pull(prefix, self.image, self.environ)
            if not pulled.ok:
                how = self._how_to_get() if pulled.failure_class == "image-missing" else (
                    f"retry, or pull by hand: {' '.join(prefix)} pull {self.image}")
                return self._fail(pulled.failure_class or "infra", f"{pulled.message}; {how}")
            present = self._inspect_image()
        if present is None:
            return self._fail("image-missing", f"image {self.image} is not on this host "
                                               f"(platform {p.name}: pull {self.pull}); "
                                               f"{self._how_to_get()}")
        self._image = present
        return None

    def _how_to_get(self) -> str:
        p = self.platform
        pull = f"pull it: {' '.join(self.engine_prefix())} pull {self.image}"
        if p.build is None:
            return pull
        build = f"harness image build --platform {p.name}"
        if self.image != images.platform_image(p, self.environ):
            build += f" --image {self.image}"
        return f"build it: {build} (add --push to publish it), or {pull}"

    def _fail(self, failure_class: str, message: str) -> str:
        self._failure = (failure_class, redact(message, self.environ))
        print(f"error: {self._failure[1]}", file=sys.stderr, flush=True)
        return self._failure[1]

    def image_digest(self) -> str | None:
        """Registry digest of the image's repository, else the local image id."""
        if self._image is None:
            self._image = self._inspect_image()
        if not self._image:
            return None
        return images.digest_of(self.image, self._image)

    def pinned(self) -> tuple[str, str] | None:
        """(image, pull) for a retry that must run the very image this launch ran: its
        digest, never the moving tag (``nightly`` may have moved since). None: not prepared."""
        digest = self.image_digest() if self._image is not None else None
        return (digest, "missing") if digest else None

    def on_stop(self) -> None:
        """Kill (if still running), inspect, keep the log, remove. Safe to call twice or never
        having started; every engine call has a timeout."""
        if self._stopped:
            return
        self._stopped = True
        state = self.inspect()
        if state is None:  # never created (the client failed first) or already gone
            self.removed = not self._exists()
            hand_over(self._platform_dir(), self.user)
            return
        if state.get("State", {}).get("Running"):
            self._call("kill", self.name)
            self._call("wait", self.name)
            state = self.inspect() or state
        elif self._removed_by_someone_else(state.get("State", {})):
            state = {**state, "State": {**state.get("State", {}), "Status": "removing"}}
        self._state = state
        self._save_log()
        if self.keep_container:  # stopped, kept until release() knows whether a job failed
            self.kept = True
        else:
            self._call("rm", "-f", self.name)
            self.removed = not self._exists()
        hand_over(self._platform_dir(), self.user)

    def _removed_by_someone_else(self, exited: dict) -> bool:
        """A SIGKILL we did not send, without the OOM flag, is an OOM kill (podman with runc on
        cgroup v1 does not flag it) or someone's ``rm -f``, which kills first and removes a
        moment later: watch the container for a few seconds to tell them apart."""
        if exited.get("ExitCode") != SIGKILL_EXIT or exited.get("OOMKilled"):
            return False
        deadline = time.monotonic() + REMOVAL_SETTLE_S
        while time.monotonic() < deadline:
            time.sleep(0.5)
            again = self.inspect()
            if again is None or being_removed(again.get("State", {})):
                return True
        return False

    def _platform_dir(self) -> Path:
        r = self.request
        return r.results_dir / r.run_id / self.platform.name

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
        failure = self._failure or self._classify(outcome, state)
        oom = oom_killed(state, exit_code, outcome)
        image_id = (self._state or {}).get("Image")
        details = {"oom": oom, "exit_code": exit_code, "container": self.name,
                   "removed": self.removed,
                   "fingerprint": {"image": self.image,
                                   "image_digest": self.image_digest() or image_id,
                                   "container": True, "launch": "container",
                                   "container_started_by_harness": True}}
        if failure and not oom:
            details["failure"] = failure
        return details

    def _classify(self, outcome: WorkerOutcome, state: dict) -> tuple[str, str] | None:
        return classify_exit(outcome, state, engine=self.engine, image=self.image,
                             container=self.name, python=self.platform.python,
                             how_to_get=self._how_to_get)

    def inspect(self) -> dict[str, Any] | None:
        return images.first_object(self._call("inspect", self.name))

    def _inspect_image(self) -> dict[str, Any] | None:
        return images.first_object(self._call("image", "inspect", self.image))

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

    def _call(self, *args: str) -> proc.Captured | None:
        return images.call(self.engine_prefix(), *args, environ=self.environ)


def _container_name(platform: str, run_id: str) -> str:
    # Unique per launch (a retried job must not collide with a leftover); engines accept
    # [a-zA-Z0-9][a-zA-Z0-9_.-]*, which platform names and run ids already satisfy.
    return f"harness-{platform}-{run_id}-{int(time.time()) % 100000:05d}{secrets.token_hex(3)}"
