"""In-engine instrumentation, installed inside the engine's own process (offline mode).

A trace records what a patched code path really received, so a check can prove that the
path under test ran (for Phi4MM: one encoder call with images of different crop counts).
Mutations are the opposite: named fault injections that re-create a known upstream bug, used
by the harness's own tests to prove a case catches the regression. They are applied only when
``HARNESS_MUTATIONS`` names them, and the result's engine section records that they were.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

from harness.spec.instruments import TRACE_NAMES, require_same

MUTATIONS_ENV = "HARNESS_MUTATIONS"
# Which part of the engine's life a trace record comes from: "startup" (vLLM's profiling run
# with dummy inputs) or "requests" (the case's own). The offline child switches it.
PHASE = {"now": "startup"}


def set_phase(name: str) -> None:
    PHASE["now"] = name


def _phi4mm_image_batches(record: list[dict[str, Any]]) -> None:
    from vllm.model_executor.models import phi4mm

    original = phi4mm.Phi4MMForCausalLM._process_image_input

    @functools.wraps(original)
    def traced(self, image_input):
        mask = image_input["image_attention_mask"]
        if isinstance(mask, (list, tuple)):
            crops = [int(t.shape[0]) for t in mask]
            shapes = [list(t.shape) for t in mask]
        else:
            crops = [int(mask.shape[1])] * int(mask.shape[0])
            shapes = [list(mask.shape)]
        record.append({"phase": PHASE["now"],
                       "mask_type": "list" if isinstance(mask, (list, tuple)) else "tensor",
                       "crop_counts": crops, "mask_shapes": shapes,
                       "image_sizes": [list(map(int, s)) for s in image_input["image_sizes"]]})
        return original(self, image_input)

    phi4mm.Phi4MMForCausalLM._process_image_input = traced


TRACES: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "phi4mm_image_batches": _phi4mm_image_batches,
}
require_same("trace", TRACE_NAMES, TRACES)


def _revert_phi4mm_stack_with_pad() -> None:
    # vLLM before PR #43647 passed the (possibly ragged) list straight to the encoder.
    from vllm.model_executor.models import phi4mm

    phi4mm.stack_with_pad = lambda tensors, padding_value=0: tensors


def _zero_qwen2_5_vl_image_features() -> None:
    # A vision tower whose output is ignored: the language model sees the image placeholders
    # with all-zero embeddings, so every image of one size looks the same.
    from vllm.model_executor.models import qwen2_5_vl

    cls = qwen2_5_vl.Qwen2_5_VLForConditionalGeneration
    original = cls._process_image_input

    @functools.wraps(original)
    def zeroed(self, image_input):
        return tuple(t * 0 for t in original(self, image_input))

    cls._process_image_input = zeroed


MUTATIONS: dict[str, Callable[[], None]] = {
    "phi4mm_revert_stack_with_pad": _revert_phi4mm_stack_with_pad,
    "qwen2_5_vl_zero_image_features": _zero_qwen2_5_vl_image_features,
}


def install_traces(names: list[str]) -> dict[str, list[dict[str, Any]]]:
    unknown = [name for name in names if name not in TRACES]
    if unknown:
        raise ValueError(f"unknown trace(s) {unknown}; known: {sorted(TRACES)}")
    records: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        records[name] = []
        TRACES[name](records[name])
    return records


def apply_mutations_from_env() -> list[str]:
    names = [n for n in os.environ.get(MUTATIONS_ENV, "").split(",") if n]
    unknown = [name for name in names if name not in MUTATIONS]
    if unknown:
        raise ValueError(f"unknown mutation(s) {unknown}; known: {sorted(MUTATIONS)}")
    for name in names:
        MUTATIONS[name]()
    return names
