"""Preflight: a few seconds of checks that catch a bad node before a 60-minute job.

Each check gives one line: pass, warn or fail, what it saw, and the fix. ``harness doctor``
prints them all; ``harness run`` runs the ``cheap`` ones itself and stops on a failure.
Host facts come through parameters (device directory, group file, command runner), so tests
use small fake trees and recorded tool outputs instead of a GPU.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from harness import gpuinfo
from harness.host.launch.gpus import GROUP_FILE, SYSFS, group_id
from harness.host.launch.own_gpus import OwnGpus, own_gpus
from harness.spec.case import Platform

DEV = Path("/dev")
# vLLM refuses to start when free memory is below gpu_memory_utilization x total (0.9 by
# default, 0.8 in the Phi4MM case): anything beyond a few percent used is a leftover.
CLEAN_USED_FRACTION = 0.05
IMAGE_STALE_DAYS = 7
FREE_GIB_NEEDED = {"hub": 60, "tiny": 5}  # an 11 GB snapshot, a 22 GB image; tiny: ~0.2 GB
GIB = 1024 ** 3


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "pass" | "warn" | "fail"
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.upper():<5} {self.name:<16} {self.detail}"
        return text + (f"  -> fix: {self.fix}" if self.fix and self.status != "pass" else "")


@dataclass
class Host:
    """Where host facts come from (replaced in tests)."""

    dev: Path = DEV
    group_file: Path = GROUP_FILE
    runner: Callable[[list[str]], tuple[int, str]] = gpuinfo.run_command
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    sysfs: Path = SYSFS
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # Runs the remote-code probe (harness.host.remote_code): the platform's Python or its image.
    probe_runner: Callable[[list[str]], tuple[int, str]] | None = None


def engine_prefix(platform: Platform, host: Host,
                  engine: str | None = None) -> tuple[str, list[str]]:
    """(engine name, client argv prefix): the same client the launcher runs."""
    from harness.host import images

    name = engine or platform.engine
    return name, images.client(name, platform, host.environ)


def check_engine(platform: Platform, host: Host, engine: str | None = None) -> Check:
    name, prefix = engine_prefix(platform, host, engine)
    fmt = "{{.Version.Version}}" if name == "podman" else "{{.ServerVersion}}"
    code, out = host.runner([*prefix, "info", "--format", fmt])
    if code == 0 and out.strip():
        return Check("engine", "pass", f"{name} {out.strip()} answers")
    why = "not installed" if code == 127 else f"exit {code}: {out.strip()[:200]}"
    client = f" ({prefix[0]})" if prefix[0] != name else ""
    return Check("engine", "fail", f"{name}{client} does not answer ({why})",
                 f"start the {name} daemon / check DOCKER_HOST, or pass --engine")


def parse_created(text: str) -> datetime | None:
    """docker: 2026-11-30T19:20:00.123Z; podman: 2026-11-30 19:22:08.1 +0000 UTC."""
    match = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)", text.strip())
    if not match:
        return None
    stamp = datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}")
    offset = re.search(r"([+-])(\d\d):?(\d\d)(?!.*\d{4}-)", text[match.end():])
    delta = timedelta(0)
    if offset:
        delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3)))
        delta = -delta if offset.group(1) == "-" else delta
    return (stamp - delta).replace(tzinfo=timezone.utc)


def check_image(platform: Platform, host: Host, engine: str | None = None) -> Check:
    from harness.host.images import platform_image

    name, prefix = engine_prefix(platform, host, engine)
    image = platform_image(platform, host.environ)
    code, out = host.runner([*prefix, "image", "inspect", image, "--format", "{{.Created}}"])
    if code != 0:
        return Check("image", "warn", f"{image} is not present locally (`run` will try to "
                     "pull it)", f"build it (harness pipeline --platform {platform.name} "
                     f"--build-images) or {name} pull {image}")
    created = parse_created(out)
    if created is None:
        return Check("image", "pass", f"{image} present (created {out.strip()!r})")
    age = host.now - created
    detail = f"{image} present, built {age.days} d {age.seconds // 3600} h ago"
    if age > timedelta(days=IMAGE_STALE_DAYS):
        return Check("image", "warn", detail, "rebuild or pull: tonight's vLLM is newer")
    return Check("image", "pass", detail)


def render_nodes(host: Host) -> list[Path]:
    try:
        return sorted((host.dev / "dri").glob("renderD*"))
    except OSError:
        return []


def check_rocm_devices(host: Host) -> list[Check]:
    kfd = host.dev / "kfd"
    if not kfd.exists():
        return [Check("kfd", "fail", f"{kfd} missing: no ROCm driver (amdgpu) on this host",
                      "install/load amdgpu (modprobe amdgpu) or run on a GPU node")]
    checks = [Check("kfd", "pass", f"{kfd} accessible") if os.access(kfd, os.R_OK | os.W_OK)
              else Check("kfd", "fail", f"{kfd} not readable/writable by uid {os.getuid()}",
                         "add the agent's user to the render and video groups")]
    nodes = render_nodes(host)
    if not nodes:
        return checks + [Check("render nodes", "fail", f"no {host.dev}/dri/renderD* devices",
                               "load amdgpu; check the GPUs with amd-smi list")]
    closed = [n.name for n in nodes if not os.access(n, os.R_OK | os.W_OK)]
    checks.append(Check("render nodes", "fail" if closed else "pass",
                        f"{len(nodes) - len(closed)}/{len(nodes)} accessible"
                        + (f" (not: {', '.join(closed)})" if closed else ""),
                        "add the agent's user to the render group"))
    render_gid = group_id("render", host.group_file)
    owners = sorted({n.stat().st_gid for n in nodes})
    if render_gid is None:
        checks.append(Check("render gid", "warn", f"no render group in {host.group_file}; "
                            f"nodes owned by gid {owners}", "groupadd render and chgrp the nodes"))
    elif owners != [render_gid]:
        checks.append(Check("render gid", "fail", f"render nodes owned by gid {owners}, but "
                            f"render is {render_gid} in {host.group_file} (the container gets "
                            f"--group-add {render_gid})", "fix the udev rule / group file so they "
                            "agree"))
    else:
        checks.append(Check("render gid", "pass", f"render nodes owned by render ({render_gid})"))
    return checks


def check_gpus_clean(accelerator: str, host: Host, own: OwnGpus | None = None) -> Check:
    """Judges the run's own GPUs (``own``; None: every GPU is the run's). A busy GPU that is
    not the run's (a neighbour agent's job) and a host without the GPU tools are warnings: the
    run itself is not stopped by them."""
    try:
        tool, gpus = gpuinfo.memory_usage(accelerator, host.runner)
    except gpuinfo.ParseError as exc:
        missing = all(p.endswith("not installed") for p in str(exc).split("; "))
        return Check("gpus clean", "warn" if missing else "fail",
                     f"cannot read GPU memory: {exc}",
                     "install amd-smi/rocm-smi (ROCm) or nvidia-smi (CUDA) on the agent")
    if not gpus:
        return Check("gpus clean", "fail", f"{tool} lists no GPU", "check the driver")
    own = own or OwnGpus(None, "no pinning")
    listed = {g.index for g in gpus}
    absent = [i for i in own.indices or [] if i not in listed]
    if own.known and absent:
        return Check("gpus clean", "fail", f"{tool} lists GPU {sorted(listed)}, not the run's "
                     f"GPU {','.join(map(str, absent))} ({own.describe()})",
                     "check the agent's pinning and the driver")
    mine = [g for g in gpus if not own.known or own.indices is None or g.index in own.indices]
    busy = [g for g in mine if g.used_fraction > CLEAN_USED_FRACTION]
    others = [g for g in gpus if g not in mine and g.used_fraction > CLEAN_USED_FRACTION]
    used = lambda gs: ", ".join(f"{g.index}: {g.used_mib:.0f}/{g.total_mib:.0f} MiB"  # noqa: E731
                                for g in gs)
    if busy and own.known:
        return Check("gpus clean", "fail", f"{tool}: memory in use on GPU {used(busy)} "
                     f"(the run's: {own.describe()})",
                     "an earlier job left a process behind: find it (amd-smi process / "
                     "nvidia-smi) and stop it; vLLM refuses to start when free memory is below "
                     "gpu_memory_utilization x total")
    if busy or others:
        whose = ("cannot tell whether they are the run's" if busy
                 else f"not the run's ({own.describe()})")
        return Check("gpus clean", "warn", f"{tool}: memory in use on GPU {used(busy or others)}"
                     f", {whose}", "nothing, if another agent's job uses them")
    return Check("gpus clean", "pass", f"{tool}: {own.describe()} free ({used(mine)})")


def _gpus_clean(platform: Platform, host: Host, in_place: bool, gpus: str | None,
                shard: int | None) -> Check:
    if in_place:  # inside a container: the GPUs it sees are the ones it was given
        return check_gpus_clean(platform.accelerator, host)
    try:
        own = own_gpus(platform, host.environ, gpus, shard, host.sysfs)
    except ValueError as exc:
        return Check("gpus clean", "fail", f"the run's GPUs: {exc}",
                     "fix --gpus or the agent's pinning variables")
    return check_gpus_clean(platform.accelerator, host, own)


def check_token(platform: Platform, host: Host) -> Check:
    if "HF_TOKEN" not in platform.pass_env:
        return Check("HF_TOKEN", "pass", "not used by this platform")
    if host.environ.get("HF_TOKEN"):
        return Check("HF_TOKEN", "pass", "HF_TOKEN is set (passed by name)")
    return Check("HF_TOKEN", "warn", "HF_TOKEN is not set: gated or rate-limited hub downloads "
                 "will fail", "export HF_TOKEN in the agent's environment")


def check_disk(name: str, path: Path, need_gib: float) -> Check:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / GIB
    detail = f"{free:.0f} GiB free for {path}"
    if free < need_gib:
        return Check(name, "fail", f"{detail} (needs {need_gib} GiB)",
                     "free space: `docker system prune`, old caches, or move HF_HOME")
    return Check(name, "pass", detail)


def engine_root(platform: Platform, host: Host, engine: str | None = None) -> Path | None:
    name, prefix = engine_prefix(platform, host, engine)
    fmt = "{{.Store.GraphRoot}}" if name == "podman" else "{{.DockerRootDir}}"
    code, out = host.runner([*prefix, "info", "--format", fmt])
    return Path(out.strip()) if code == 0 and out.strip().startswith("/") else None


def check_snapshots(pairs: list[tuple[str, str | None]], cache: Path,
                    platform: str) -> Check:
    from harness.models.hub import SnapshotMissing, resolve_snapshot

    missing = []
    for repo_id, revision in pairs:
        try:
            resolve_snapshot(repo_id, revision, cache, platform)
        except SnapshotMissing:
            missing.append(f"{repo_id}@{(revision or 'main')[:12]}")
    if missing:
        return Check("hub snapshots", "fail", f"missing in {cache}: {', '.join(missing)}",
                     f"harness models fetch --platform {platform}")
    return Check("hub snapshots", "pass", f"all {len(pairs)} present in {cache}")


def platform_checks(platform: Platform, host: Host, *, engine: str | None = None,
                    in_place: bool = False, cheap: bool = False,
                    results: Path = Path("results"),
                    snapshots: list[tuple[str, str | None]] | None = None,
                    remote_code: list[tuple[str, str | None]] | None = None,
                    gpus: str | None = None, shard: int | None = None) -> list[Check]:
    """The checks for one platform. ``cheap``: only what can stop a run for certain (what
    `harness run` does first); ``in_place``: no container engine or image is involved.
    ``gpus``/``shard``: the run's --gpus and --shard-index, which choose its GPUs."""
    from harness.models import default_cache_root
    from harness.models.hub import platform_hub_cache

    checks: list[Check] = []
    containerised = platform.launcher == "container" and not in_place
    if containerised:
        checks.append(check_engine(platform, host, engine))
        if checks[-1].status == "pass" and not cheap:
            checks.append(check_image(platform, host, engine))
    if platform.accelerator == "rocm" and platform.gpu_flags is None:  # else: its own flags
        checks += check_rocm_devices(host)
    if platform.accelerator in ("rocm", "cuda"):
        checks.append(_gpus_clean(platform, host, in_place, gpus, shard))
    if cheap:
        return checks
    checks.append(check_token(platform, host))
    launcher = "local" if in_place else platform.launcher
    cache = (platform_hub_cache(launcher, platform.env, host.environ)
             if platform.model_source == "hub" else default_cache_root(host.environ))
    if platform.model_source == "hub" and snapshots is not None:
        checks.append(check_snapshots(snapshots, cache, platform.name))
        if checks[-1].status == "pass" and remote_code:
            checks += check_remote_code(platform, host, remote_code, cache, engine,
                                        containerised)
    checks.append(check_disk("disk: models", cache, FREE_GIB_NEEDED[platform.model_source]))
    checks.append(check_disk("disk: results", results.resolve(), 1))
    if containerised and checks[0].status == "pass":
        root = engine_root(platform, host, engine)
        if root is not None:
            checks.append(check_disk("disk: images", root,
                                     30 if platform.accelerator != "cpu" else 10))
    return checks


def check_remote_code(platform: Platform, host: Host, pairs: list[tuple[str, str | None]],
                      cache: Path, engine: str | None, containerised: bool) -> list[Check]:
    """Each snapshot whose engine runs the repository's own code: does that code load under
    the platform's transformers (in its image), in seconds rather than 15 minutes into a start?"""
    from harness.host import remote_code
    from harness.host.images import platform_image
    from harness.models.hub import resolve_snapshot

    import sys

    container, python = None, sys.executable  # local and in-place: the harness's own Python
    where = "this environment"
    if containerised:
        python = platform.python
        image = platform_image(platform, host.environ)
        ulimits = [f for k, v in platform.ulimits.items() for f in ("--ulimit", f"{k}={v}")]
        container = [*engine_prefix(platform, host, engine)[1], "run", *ulimits, image]
        where = f"image {image}"
    runner = host.probe_runner or remote_code.run_probe
    out = []
    for repo_id, revision in pairs:
        snapshot = resolve_snapshot(repo_id, revision, cache, platform.name).path
        argv = remote_code.probe_argv(python, snapshot, container=container, cache=cache)
        out.append(remote_code_check(repo_id, revision, snapshot, argv, runner, where))
    return out


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]


def remote_code_check(repo_id: str, revision: str | None, snapshot: Path, argv: list[str],
                      runner: Callable[[list[str]], tuple[int, str]], where: str):
    """One snapshot's remote code under the platform's transformers (harness.host.remote_code's probe)."""
    from harness.host import remote_code

    code, output = runner(argv)
    found = remote_code.parse(output)
    name = f"{repo_id}@{(revision or 'main')[:12]}"
    version = found.get("transformers", "?")
    if found.get("ok"):
        return Check("remote code", "pass", f"{name}: {found['config']} and "
                     f"{found['processor']} load under transformers {version} ({where})")
    return Check("remote code", "fail", f"{name}: the snapshot's remote code does not load "
                 f"under transformers {version} ({where}): {found.get('error')}",
                 "pin a model.revision whose remote code loads under this transformers, or "
                 "run an image whose transformers (and packages, e.g. scipy) it supports")
