"""An agent's own GPU pinning, carried into the container as device flags. Pure, no engine calls.

Several Buildkite agents on one 8-GPU node each own some GPUs, said in their environment:

- ``BUILDKITE_AGENT_META_DATA_RENDER_DEVICES``: what vLLM's AMD CI passes to ``docker run``
  verbatim (``--device /dev/kfd $BUILDKITE_AGENT_META_DATA_RENDER_DEVICES``), i.e. device
  flags such as ``--device /dev/dri/renderD128 --device /dev/dri/renderD129``.
- ``ROCR_VISIBLE_DEVICES`` then ``HIP_VISIBLE_DEVICES`` (ROCm: HIP indexes inside ROCr's set),
  and ``CUDA_VISIBLE_DEVICES`` (CUDA; HIP honours it too): host GPU indices (CUDA: or UUIDs).

The harness never sets these variables inside the container: it exposes only the pinned
devices, which the container's runtime numbers from 0 (see gpus.rocm_args for why).
Precedence: ``--gpus`` on the command line, then the agent's pinning, then parallel-job ranges
and the platform's ``gpus``. With ``gpus_per_job``, parallel jobs split the agent's own set.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from harness.host.launch.gpus import (FIRST_RENDER_MINOR, GROUP_FILE, SYSFS, cuda_args, group_id,
                                 kfd_render_minors, rocm_render_nodes)

RENDER_DEVICES_VAR = "BUILDKITE_AGENT_META_DATA_RENDER_DEVICES"
ROCM_VARS = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
_RENDER_NODE_RE = re.compile(r"^/dev/dri/renderD\d+$")
_CUDA_ID_RE = re.compile(r"^(\d+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-fA-F/-]+)$")


@dataclass(frozen=True)
class AgentPinning:
    source: str  # the variable(s) it came from
    devices: list[str]  # ROCm: render node paths; CUDA: device indices or UUIDs


def parse_render_devices(text: str) -> list[str]:
    """``--device /dev/dri/renderD128 --device=/dev/dri/renderD129`` (or bare paths)."""
    tokens, nodes = shlex.split(text), []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--device":
            if i + 1 >= len(tokens):
                raise ValueError(f"{RENDER_DEVICES_VAR}: --device without a path")
            token, i = tokens[i + 1], i + 1
        elif token.startswith("--device="):
            token = token.split("=", 1)[1]
        node = token.split(":", 1)[0]  # --device HOST[:CONTAINER[:PERMS]]
        if not _RENDER_NODE_RE.match(node):
            raise ValueError(f"{RENDER_DEVICES_VAR}: expected --device /dev/dri/renderD<N>, "
                             f"got {token!r}")
        nodes.append(node)
        i += 1
    if not nodes:
        raise ValueError(f"{RENDER_DEVICES_VAR} is set but names no render device")
    return nodes


def parse_visible(name: str, text: str, uuids: bool = False) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    pattern = _CUDA_ID_RE if uuids else re.compile(r"^\d+$")
    bad = [item for item in items if not pattern.match(item)]
    if bad or not items:
        what = "GPU indices or UUIDs" if uuids else "GPU indices"
        raise ValueError(f"{name}={text!r}: expected comma-separated {what}")
    if len(set(items)) != len(items):
        raise ValueError(f"{name}={text!r}: a GPU repeats")
    return items


def rocm_pinning(environ: Mapping[str, str], sysfs: Path = SYSFS) -> AgentPinning | None:
    if environ.get(RENDER_DEVICES_VAR, "").strip():
        return AgentPinning(RENDER_DEVICES_VAR, parse_render_devices(environ[RENDER_DEVICES_VAR]))
    indices: list[int] | None = None
    used = []
    for name in ROCM_VARS:  # each narrows the previous one's set, as ROCr then HIP do
        text = environ.get(name, "").strip()
        if not text:
            continue
        chosen = [int(i) for i in parse_visible(name, text)]
        if indices is not None:
            beyond = [i for i in chosen if i >= len(indices)]
            if beyond:
                raise ValueError(f"{name}={text!r} indexes GPU {beyond[0]} of the "
                                 f"{len(indices)} that {used[-1]} leaves visible")
            chosen = [indices[i] for i in chosen]
        indices, used = chosen, [*used, name]
    if indices is None:
        return None
    return AgentPinning("+".join(used), rocm_render_nodes(indices, sysfs))


def cuda_pinning(environ: Mapping[str, str]) -> AgentPinning | None:
    text = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not text:
        return None
    return AgentPinning("CUDA_VISIBLE_DEVICES", parse_visible("CUDA_VISIBLE_DEVICES", text, True))


def agent_pinning(accelerator: str, environ: Mapping[str, str],
                  sysfs: Path = SYSFS) -> AgentPinning | None:
    if accelerator == "rocm":
        return rocm_pinning(environ, sysfs)
    if accelerator == "cuda":
        return cuda_pinning(environ)
    return None


def render_node_indices(nodes: list[str], sysfs: Path = SYSFS) -> list[int] | None:
    """The GPU indices (ROCr's order, which the GPU tools' indices follow) of render nodes: the
    inverse of gpus.rocm_render_nodes. None when a node is not a GPU this host lists."""
    known = kfd_render_minors(sysfs)
    indices = []
    for node in nodes:
        minor = int(node.rsplit("renderD", 1)[1])
        if known:
            if minor not in known:
                return None
            indices.append(known.index(minor))
        else:  # no KFD topology to read: AMD's documented default numbering, as rocm_render_nodes
            indices.append(minor - FIRST_RENDER_MINOR)
    return indices if all(i >= 0 for i in indices) else None


def share_for_parallel_job(devices: list[str], job_index: int | None,
                           gpus_per_job: int | None) -> list[str]:
    """Parallel job i of the agent's step takes devices [i*n, i*n + n) of the agent's set."""
    if not gpus_per_job or job_index is None:
        return devices
    first = job_index * gpus_per_job
    share = devices[first:first + gpus_per_job]
    if len(share) < gpus_per_job:
        raise ValueError(f"parallel job {job_index} needs {gpus_per_job} GPU(s) from position "
                         f"{first} but the agent is pinned to {len(devices)}")
    return share


def pinned_args(accelerator: str, engine: str, devices: list[str],
                group_file: Path = GROUP_FILE) -> list[str]:
    """The `run` flags exposing exactly the pinned devices."""
    if accelerator == "rocm":
        args = ["--device", "/dev/kfd"]
        for node in devices:
            args += ["--device", node]
        args += ["--group-add", "video"]
        render = group_id("render", group_file)
        if render is not None:
            args += ["--group-add", str(render)]
        return args + ["--security-opt", "seccomp=unconfined"]
    if accelerator == "cuda":
        if engine == "podman":
            return [arg for d in devices for arg in ("--device", f"nvidia.com/gpu={d}")]
        # docker's --gpus takes indices or UUIDs: cuda_args quotes the list the same way.
        if all(d.isdigit() for d in devices):
            return cuda_args([int(d) for d in devices], engine)
        value = ",".join(devices)
        return ["--gpus", f"device={value}" if len(devices) == 1 else f'"device={value}"']
    return []

