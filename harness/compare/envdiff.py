"""What differs between the environments two sides ran in (from the results' fingerprints)."""

from __future__ import annotations

from harness.compare.model import EnvDifference
from harness.results import Result

# Fields that explain a behaviour difference. Host names, CI job ids and the platform name
# differ on every run and would bury the useful lines.
ENV_KEYS = ("vllm", "vllm_distribution", "torch", "transformers", "python", "accelerator",
            "device", "image", "image_digest", "container", "git_commit", "harness")


def _values(results: list[Result], key: str) -> tuple[str, ...]:
    # Placeholders written for lost jobs carry a partial fingerprint: absent keys say nothing.
    seen = {"-" if r.fingerprint[key] in (None, "") else str(r.fingerprint[key])
            for r in results if key in r.fingerprint}
    return tuple(sorted(seen))


def environment_diff(baseline: list[Result], candidate: list[Result]) -> tuple[EnvDifference, ...]:
    """Keys whose values differ; a side whose results disagree among themselves lists each."""
    out = []
    for key in ENV_KEYS:
        a, b = _values(baseline, key), _values(candidate, key)
        if a and b and a != b:
            out.append(EnvDifference(key, a, b))
    return tuple(out)
