"""What changed between the last good and the first bad image, by component, and which layer
that points at. Pure: two stacks in (harness.worker.stack, as each step's result recorded it),
a diff and a layer out.

The layers: vLLM (its version and commit) and the accelerator stack inside the image (torch and
its HIP/CUDA build, Triton, AITER, ROCm, hipBLASLt, rocBLAS). Anything else recorded
(transformers) is listed but names no layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from harness.stack import COMPONENTS, LABELS

VLLM_COMPONENTS = ("vllm", "vllm_commit")
STACK_COMPONENTS = ("torch", "torch_hip", "torch_cuda", "triton", "aiter", "rocm", "hipblaslt",
                    "rocblas")
VLLM_ONLY = "vLLM changed only"
STACK_ONLY = "ROCm stack changed only"
BOTH = "both changed"
NEITHER = "neither vLLM nor the ROCm stack changed"
UNKNOWN = "unknown: the versions of one end were not recorded"


@dataclass(frozen=True)
class Change:
    component: str
    before: str | None  # None: not present in that image
    after: str | None

    @property
    def label(self) -> str:
        return LABELS.get(self.component, self.component)


@dataclass(frozen=True)
class ComponentDiff:
    changes: tuple[Change, ...]
    layer: str
    known: bool  # both ends' stacks were recorded

    def as_json(self) -> dict:
        return {"layer": self.layer, "known": self.known,
                "changed": [{"component": c.component, "before": c.before, "after": c.after}
                            for c in self.changes]}


def stack_layer_name(accelerator_stack: Mapping[str, str | None]) -> str:
    """'ROCm stack' for a HIP build, 'CUDA stack' for a CUDA one (the platform's stack)."""
    if accelerator_stack.get("torch_cuda") and not accelerator_stack.get("torch_hip"):
        return "CUDA stack"
    return "ROCm stack"


def diff(good: Mapping[str, object] | None, bad: Mapping[str, object] | None) -> ComponentDiff:
    """The components whose recorded version differs, and the layer they point at."""
    if not good or not bad:
        return ComponentDiff((), UNKNOWN, False)
    keys = [*COMPONENTS, *sorted((set(good) | set(bad)) - set(COMPONENTS))]
    changes = tuple(Change(k, _text(good.get(k)), _text(bad.get(k))) for k in keys
                    if _text(good.get(k)) != _text(bad.get(k)))
    changed = {c.component for c in changes}
    vllm, stack = bool(changed & set(VLLM_COMPONENTS)), bool(changed & set(STACK_COMPONENTS))
    name = stack_layer_name({k: _text(v) for k, v in bad.items()})
    if vllm and stack:
        layer = BOTH
    elif vllm:
        layer = VLLM_ONLY
    elif stack:
        layer = STACK_ONLY.replace("ROCm stack", name)
    else:
        layer = NEITHER.replace("ROCm stack", name)
    return ComponentDiff(changes, layer, True)


def _text(value: object) -> str | None:
    return None if value in (None, "") else str(value)
