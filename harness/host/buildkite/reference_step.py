"""The nightly `harness reference` step: which side agrees with transformers, answered on a GPU
with the hub weights, not only on CPU with tiny ones.

After the run steps (their GPUs are free again), one agent of a GPU platform's queue fetches the
pinned snapshots (present ones are not fetched again) and runs ``harness reference
--model-source hub --device cuda`` (ROCm's torch calls its GPUs ``cuda`` too), which writes the
``hf-cuda`` pseudo-platform under this build's run directory and uploads it. The compare steps
download it and pass ``--reference hf-cuda``: where the sides disagree (regression, fix,
divergence), the verdict line and the annotation say which side agrees with the reference.
Transformers runs in the platform's image (``--platform``), as the worker does: the agent's
host needs no torch (an agent set up as the README says has none).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from harness.spec.platform import Platform
from harness.spec.platform import reference_platform_name

KEY = "reference-hf"
DEVICE = "cuda"
PLATFORM = reference_platform_name(DEVICE)  # hf-cuda
TIMEOUT_MIN = 60


def reference_platform(comparisons: Sequence, platforms: Mapping[str, Platform],
                       in_pipeline: Sequence[str]) -> Platform | None:
    """The GPU platform whose queue runs the reference: the first compared candidate (then
    baseline) in the pipeline that has a GPU and hub weights; None when there is none."""
    for comparison in comparisons:
        for name in (comparison.candidate, comparison.baseline):
            platform = platforms.get(name)
            if (name in in_pipeline and platform is not None and platform.queue
                    and platform.accelerator in ("rocm", "cuda")
                    and platform.model_source == "hub"):
                return platform
    return None


def reference_step(platform: Platform, after: Sequence[str], options) -> dict[str, Any]:
    from harness.host.buildkite.shell import AGENT_LOST, RESULTS, RUN_ID, Raw, sh
    from harness.outcomes import EXIT_INFRA

    cases = options.cases or "cases"
    fetch = sh(Raw(options.harness), "models", "fetch", "--platform", platform.name,
               *(["--cases", options.cases] if options.cases else []),
               *(["--platforms-file", options.platforms_file] if options.platforms_file else []))
    # in the platform's image (its torch, transformers and GPUs), as the run steps' worker runs
    reference = sh(Raw(options.harness), "reference", "--case", cases, "--results", RESULTS,
                   "--run-id", Raw(RUN_ID), "--model-source", "hub", "--device", DEVICE,
                   "--platform", platform.name,
                   *(["--platforms-file", options.platforms_file] if options.platforms_file
                     else []))
    return {
        "label": f"hf reference on {platform.name} (GPU, hub weights)",
        "key": KEY,
        "depends_on": [{"step": key, "allow_failure": True} for key in after],
        "commands": [fetch, reference],
        "agents": {"queue": platform.queue},
        "timeout_in_minutes": TIMEOUT_MIN,
        "retry": {"automatic": [{"exit_status": AGENT_LOST, "limit": 2}]},
        "soft_fail": [{"exit_status": EXIT_INFRA}],
        "artifact_paths": [f"{RESULTS}/{RUN_ID}/{PLATFORM}/**/*"],
    }
