"""Which of the host's GPUs a run uses, as GPU indices the GPU tools list. Pure, no engine calls.

The same precedence as the container launcher (``ContainerLaunch``): ``--gpus``, then the
agent's own pinning (harness.host.launch.agent_gpus), then parallel-job ranges and the platform's
``gpus``. `harness doctor` judges only these GPUs: on an 8-GPU node with one agent per GPU, a
neighbour's job is not this run's problem.

Indices follow ROCr's order (KFD topology nodes), which amd-smi and rocm-smi use too; CUDA
indices are nvidia-smi's, i.e. PCI bus order (agents that pin by index set
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA agrees). A CUDA agent pinned by UUID cannot be matched
to nvidia-smi's indices here: its GPUs are unknown, and busy GPUs are then only a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from harness.host.launch.agent_gpus import agent_pinning, render_node_indices, share_for_parallel_job
from harness.host.launch.gpus import SYSFS, count_gpus, parallel_job_index, parse_gpus, select_gpus
from harness.spec.case import Platform


@dataclass(frozen=True)
class OwnGpus:
    indices: list[int] | None  # the run's GPUs; None: every GPU of the host
    source: str  # where the choice came from, for the check's message
    known: bool = True  # False: pinned, to GPUs that cannot be matched to the tools' indices

    def describe(self) -> str:
        if not self.known:
            return f"pinned by {self.source} (not matched to GPU indices)"
        if self.indices is None:
            return f"all GPUs ({self.source})"
        return f"GPU {','.join(map(str, self.indices))} ({self.source})"


def own_gpus(platform: Platform, environ: Mapping[str, str], cli: str | None = None,
             shard: int | None = None, sysfs: Path = SYSFS) -> OwnGpus:
    """The run's GPUs. Raises ValueError on a bad --gpus or pinning (the launcher would too)."""
    accelerator = platform.accelerator
    job_index = parallel_job_index(shard, environ)
    if cli:
        return OwnGpus(parse_gpus(cli), "--gpus")
    pinning = agent_pinning(accelerator, environ, sysfs)
    if pinning is not None:
        devices = share_for_parallel_job(pinning.devices, job_index, platform.gpus_per_job)
        if accelerator == "rocm":
            indices = render_node_indices(devices, sysfs)
        else:
            indices = [int(d) for d in devices] if all(d.isdigit() for d in devices) else None
        return OwnGpus(indices, pinning.source, known=indices is not None)
    chosen = select_gpus(None, platform, job_index, total=count_gpus(accelerator, sysfs))
    return OwnGpus(chosen, "parallel job" if platform.gpus_per_job and job_index is not None
                   else f"platform gpus: {platform.gpus}")
