"""Which GPUs a container gets, and the `run` flags that give them to it. Pure, no engine calls.

Host facts (``/etc/group``, the KFD topology in sysfs, the NVIDIA driver's /proc entries) are
read through paths the caller can replace, so tests use small fake trees instead of a GPU.

Selection order: ``--gpus`` on the command line, else the parallel job index (``--shard-index``,
or Buildkite's ``BUILDKITE_PARALLEL_JOB``) with the platform's ``gpus_per_job``, else the
platform's ``gpus``.
Inside the container the selected GPUs are numbered from 0: both engines expose only them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from harness.spec.case import Platform

GROUP_FILE = Path("/etc/group")
SYSFS = Path("/sys")
PROC = Path("/proc")
FIRST_RENDER_MINOR = 128  # /dev/dri/renderD128 is the first GPU when nothing is partitioned
_GPUS_RE = re.compile(r"all|\d+(,\d+)*")


def parse_gpus(text: str) -> list[int] | None:
    """``"all"`` -> None (every GPU); ``"0,2"`` -> [0, 2]."""
    text = text.strip()
    if not _GPUS_RE.fullmatch(text):
        raise ValueError(f"expected 'all' or comma-separated GPU indices like 0,1; got {text!r}")
    if text == "all":
        return None
    indices = [int(part) for part in text.split(",")]
    if len(set(indices)) != len(indices):
        raise ValueError(f"GPU indices repeat: {text!r}")
    return indices


def gpus_for_parallel_job(job_index: int, gpus_per_job: int,
                          total: int | None = None) -> list[int]:
    """Job i of a Buildkite ``parallelism`` step gets GPUs [i*n, i*n + n): disjoint ranges."""
    if job_index < 0 or gpus_per_job <= 0:
        raise ValueError(f"bad parallel job {job_index} / gpus per job {gpus_per_job}")
    first = job_index * gpus_per_job
    indices = list(range(first, first + gpus_per_job))
    if total is not None and indices[-1] >= total:
        raise ValueError(f"parallel job {job_index} needs GPUs {indices[0]}-{indices[-1]} "
                         f"({gpus_per_job} per job) but this node has {total}")
    return indices


def parallel_job_index(shard: int | None, environ: Mapping[str, str]) -> int | None:
    """This job's index among the step's parallel jobs: ``--shard-index``, else Buildkite's."""
    if shard is not None:
        return shard
    job = environ.get("BUILDKITE_PARALLEL_JOB", "")
    return int(job) if job.isdigit() else None


def select_gpus(cli: str | None, platform: Platform, job_index: int | None,
                total: int | None = None) -> list[int] | None:
    """The host GPU indices for this run (None: all). CPU platforms get none."""
    if platform.accelerator == "cpu":
        return None
    if cli:
        return parse_gpus(cli)
    if platform.gpus_per_job and job_index is not None:
        return gpus_for_parallel_job(job_index, platform.gpus_per_job, total)
    return parse_gpus(platform.gpus)


def group_id(name: str, group_file: Path = GROUP_FILE) -> int | None:
    """The numeric gid of a host group: the container has no such name, so pass the number."""
    try:
        lines = group_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def kfd_render_minors(sysfs: Path = SYSFS) -> list[int]:
    """Render minors of the GPUs in ROCr's order: KFD topology nodes with a gpu_id, by node id.

    A partitioned MI300 (CPX, QPX) shows one node per partition, so this stays right where
    "renderD128 + index" does not.
    """
    nodes = sysfs / "class/kfd/kfd/topology/nodes"
    minors: list[tuple[int, int]] = []
    try:
        entries = [e for e in nodes.iterdir() if e.name.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            if int((entry / "gpu_id").read_text().strip() or 0) == 0:
                continue  # a CPU node
            props = dict(line.split(None, 1) for line in
                         (entry / "properties").read_text().splitlines() if " " in line)
            minors.append((int(entry.name), int(props["drm_render_minor"])))
        except (OSError, KeyError, ValueError):
            continue
    return [minor for _, minor in sorted(minors)]


def rocm_render_nodes(indices: list[int], sysfs: Path = SYSFS) -> list[str]:
    known = kfd_render_minors(sysfs)
    if not known:  # no GPU here (a dry run on a CPU host): AMD's documented default numbering
        return [f"/dev/dri/renderD{FIRST_RENDER_MINOR + i}" for i in indices]
    missing = [i for i in indices if i >= len(known)]
    if missing:
        raise ValueError(f"GPU index {missing[0]} not present: the KFD topology lists "
                         f"{len(known)} GPU(s)")
    return [f"/dev/dri/renderD{known[i]}" for i in indices]


def count_gpus(accelerator: str, sysfs: Path = SYSFS, proc: Path = PROC) -> int | None:
    """GPUs on this host, when it can tell (for checking a parallel job's range); else None."""
    if accelerator == "rocm":
        return len(kfd_render_minors(sysfs)) or None
    if accelerator == "cuda":
        try:
            return len(list((proc / "driver/nvidia/gpus").iterdir())) or None
        except OSError:
            return None
    return None


def rocm_args(gpus: list[int] | None, group_file: Path = GROUP_FILE,
              sysfs: Path = SYSFS) -> list[str]:
    """Flags from AMD's "Running ROCm Docker containers" and vLLM's ROCm docker docs.

    GPU selection: AMD documents, for containers, exposing only the chosen
    ``/dev/dri/renderD<N>`` nodes (beside ``/dev/kfd``, which every GPU shares); its GPU
    isolation page calls this more secure than the visible-devices variables, which it says
    must not be used for isolation. ROCr inside then enumerates only the exposed GPUs, from 0,
    so HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES are deliberately NOT set: host indices there
    would point at the wrong GPU (or none) inside the container. ``--cap-add SYS_PTRACE``
    (in vLLM's and AMD's examples, for debuggers) is left out: running does not need it.
    """
    args = ["--device", "/dev/kfd"]
    if gpus is None:
        args += ["--device", "/dev/dri"]
    else:
        for node in rocm_render_nodes(gpus, sysfs):
            args += ["--device", node]
    args += ["--group-add", "video"]
    render = group_id("render", group_file)
    if render is not None:  # render nodes are owned by the host's render group (by number)
        args += ["--group-add", str(render)]
    return args + ["--security-opt", "seccomp=unconfined"]


def cuda_args(gpus: list[int] | None, engine: str) -> list[str]:
    if engine == "podman":
        # Podman 4 has no --gpus; NVIDIA documents CDI device names for it instead.
        names = ["all"] if gpus is None else [str(i) for i in gpus]
        return [arg for name in names for arg in ("--device", f"nvidia.com/gpu={name}")]
    if gpus is None:
        return ["--gpus", "all"]
    if len(gpus) == 1:
        return ["--gpus", f"device={gpus[0]}"]
    # Docker reads --gpus as CSV: the double quotes keep "device=0,1" one field.
    return ["--gpus", '"device=' + ",".join(map(str, gpus)) + '"']


def gpu_args(accelerator: str, engine: str, gpus: list[int] | None,
             group_file: Path = GROUP_FILE, sysfs: Path = SYSFS) -> list[str]:
    if accelerator == "rocm":
        return rocm_args(gpus, group_file, sysfs)
    if accelerator == "cuda":
        return cuda_args(gpus, engine)
    return []
