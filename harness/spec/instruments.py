"""The names of the worker's instruments that a case may name: probes (functions run against the
platform's vLLM beside the engine) and traces (records made inside the engine's process).

The spec validates a case against these names without importing the worker; the worker binds
each name to its implementation (``harness.worker.probes.PROBES``,
``harness.worker.traces.TRACES``) and refuses to load when the two disagree."""

from __future__ import annotations

PROBE_NAMES = frozenset({
    "act_and_mul_compile_native",
    "qwen2_5_vl_vision_mlp_rocm_branch",
    "phi4mm_stack_with_pad",
    "phi4mm_schema_ragged_masks",
})
TRACE_NAMES = frozenset({
    "phi4mm_image_batches",
})


def require_same(kind: str, declared: frozenset[str], implemented) -> None:
    """Raise ImportError naming the difference when a registry and its names disagree."""
    if set(implemented) != declared:
        raise ImportError(f"{kind} registry and harness.spec.instruments disagree: only declared "
                          f"{sorted(declared - set(implemented))}, only implemented "
                          f"{sorted(set(implemented) - declared)}")
