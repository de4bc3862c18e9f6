"""Code-path probes: small checks of the patched vLLM code, run in the platform's own Python.

They call the real functions of the installed vLLM (no copies), so a probe fails when the
platform's vLLM lacks the fix, whatever the engine run happened to exercise.
Usage: ``python -m harness.worker.probes NAME... > out.json`` (one JSON object, name -> result).
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, Callable

from harness.spec.instruments import PROBE_NAMES, require_same

Probe = Callable[[], dict[str, Any]]


def _vllm_context():
    from vllm.config import VllmConfig, set_current_vllm_config

    return set_current_vllm_config(VllmConfig())


def act_and_mul_compile_native() -> dict[str, Any]:
    """get_act_and_mul_fn('silu', compile_native=False) gives a fresh, uncompiled SiluAndMul."""
    import torch
    from vllm.model_executor.layers.activation import SiluAndMul, get_act_and_mul_fn

    with _vllm_context():
        eager = get_act_and_mul_fn("silu", compile_native=False)
        cached = get_act_and_mul_fn("silu")
        x = torch.randn(3, 8)
        expected = torch.nn.functional.silu(x[:, :4]) * x[:, 4:]
        ok = (isinstance(eager, SiluAndMul) and eager is not cached
              and eager._forward_method == eager.forward_native
              and torch.allclose(eager(x), expected, atol=1e-6))
    return {"ok": ok, "type": type(eager).__name__, "fresh_instance": eager is not cached,
            "forward": getattr(eager._forward_method, "__qualname__", str(eager._forward_method))}


def qwen2_5_vl_vision_mlp_rocm_branch() -> dict[str, Any]:
    """Build the real Qwen2.5-VL vision tower with the platform check forced both ways.

    Serving on CPU or CUDA never takes the ROCm branch, so the probe substitutes a platform
    whose is_rocm() answers as asked, in qwen2_5_vl's namespace only.
    """
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from vllm.model_executor.models import qwen2_5_vl

    _init_single_process_distributed()
    config = Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, num_heads=2, intermediate_size=64,
                                    out_hidden_size=32, hidden_act="silu",
                                    fullatt_block_indexes=[1])
    real_fn, real_platform = qwen2_5_vl.get_act_and_mul_fn, qwen2_5_vl.current_platform
    seen: dict[str, Any] = {}
    try:
        for rocm in (True, False):
            calls: list[dict[str, Any]] = []

            def recording(name, _calls=calls, **kwargs):
                _calls.append(kwargs)
                return real_fn(name, **kwargs)

            qwen2_5_vl.get_act_and_mul_fn = recording
            qwen2_5_vl.current_platform = _PlatformAs(real_platform, rocm)
            with _vllm_context():
                tower = qwen2_5_vl.Qwen2_5_VisionTransformer(config, norm_eps=1e-6)
            native = [block.mlp.act_fn._forward_method == block.mlp.act_fn.forward_native
                      for block in tower.blocks]
            seen["rocm" if rocm else "not_rocm"] = {
                "compile_native": [c.get("compile_native", True) for c in calls],
                "uncompiled_forward": native}
    finally:
        qwen2_5_vl.get_act_and_mul_fn, qwen2_5_vl.current_platform = real_fn, real_platform
    ok = (seen["rocm"]["compile_native"] == [False, False]
          and seen["not_rocm"]["compile_native"] == [True, True]
          and all(seen["rocm"]["uncompiled_forward"]))
    return {"ok": ok, **seen}


class _PlatformAs:
    def __init__(self, real: Any, rocm: bool):
        self._real, self._rocm = real, rocm

    def is_rocm(self) -> bool:
        return self._rocm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _init_single_process_distributed() -> None:
    from vllm.distributed import ensure_model_parallel_initialized, init_distributed_environment
    from vllm.distributed.parallel_state import model_parallel_is_initialized

    if model_parallel_is_initialized():
        return
    from harness.worker.server import free_port

    with _vllm_context():
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method=f"tcp://127.0.0.1:{free_port()}")
        ensure_model_parallel_initialized(1, 1)


def phi4mm_stack_with_pad() -> dict[str, Any]:
    """stack_with_pad pads ragged crop masks to the largest crop count, zero-filled."""
    import torch
    from vllm.model_executor.models.phi4mm import stack_with_pad

    masks = [torch.ones(3, 32, 32), torch.ones(5, 32, 32)]
    stacked = stack_with_pad(masks)
    ok = (tuple(stacked.shape) == (2, 5, 32, 32) and bool(stacked[0, :3].all())
          and not bool(stacked[0, 3:].any()) and bool(stacked[1].all()))
    same = stack_with_pad([torch.ones(2, 32, 32), torch.ones(2, 32, 32)])
    return {"ok": ok and tuple(same.shape) == (2, 2, 32, 32), "ragged_in": [3, 5],
            "stacked_shape": list(stacked.shape)}


def phi4mm_schema_ragged_masks() -> dict[str, Any]:
    """Phi4MMImagePixelInputs accepts a list of masks with different crop counts (dynamic nc)."""
    import torch
    from vllm.model_executor.models.phi4mm import Phi4MMImagePixelInputs

    Phi4MMImagePixelInputs(
        type="pixel_values",
        pixel_values=[torch.zeros(4, 3, 448, 448), torch.zeros(6, 3, 448, 448)],
        image_sizes=torch.tensor([[448, 896], [896, 896]]),
        num_img_tokens=[100, 200],
        image_attention_mask=[torch.ones(3, 32, 32), torch.ones(5, 32, 32)])
    return {"ok": True, "crop_counts": [3, 5]}


PROBES: dict[str, Probe] = {
    "act_and_mul_compile_native": act_and_mul_compile_native,
    "qwen2_5_vl_vision_mlp_rocm_branch": qwen2_5_vl_vision_mlp_rocm_branch,
    "phi4mm_stack_with_pad": phi4mm_stack_with_pad,
    "phi4mm_schema_ragged_masks": phi4mm_schema_ragged_masks,
}
require_same("probe", PROBE_NAMES, PROBES)


def run_probes(names: list[str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in PROBES:
            results[name] = {"ok": False, "error": f"unknown probe; known: {sorted(PROBES)}"}
            continue
        try:
            results[name] = PROBES[name]()
        except Exception as exc:  # a probe that raises has found the bug (or a broken vLLM)
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc()[-3000:]}
    return results


if __name__ == "__main__":
    print("HARNESS-PROBES " + json.dumps(run_probes(sys.argv[1:])))
