"""The tiny Phi4MM's ``vision-lora`` adapter: the real model's layout, scaled down, seeded.

Phi-4-multimodal ships its vision LoRA inside the model repository (``<snapshot>/vision-lora``)
and vLLM applies it with ``LoRARequest("vision", 1, path)`` on every image request. The real
adapter: r 256, alpha 512, language-model layers only, the target regex below. The tiny one
keeps the format, module names and target regex, with r 8 (a ~108 KB file), so the CPU run
takes the same LoRA path (format and shapes measured: ../shared/notes/phi4mm-lora.md). Written
without peft: PEFT's layout is two files.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping

from . import _weights

ADAPTER_DIR = "vision-lora"
# The real adapter's target_modules (the model config's `vision_lora.layer`).
TARGET_REGEX = r"layers.*((self_attn\.(qkv_proj|o_proj))|(mlp\.(gate_up|down)_proj))"
# lora_B scale: large enough to change greedy tokens (measured: 2 of 3 requests at rank 8).
B_STD = 0.1


def module_shapes(params: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each adapted module of one decoder layer."""
    hidden, inter = int(params["hidden_size"]), int(params["intermediate_size"])
    head_dim = hidden // int(params["num_attention_heads"])
    qkv_out = hidden + 2 * int(params["num_key_value_heads"]) * head_dim
    return {"self_attn.qkv_proj": (hidden, qkv_out), "self_attn.o_proj": (hidden, hidden),
            "mlp.gate_up_proj": (hidden, 2 * inter), "mlp.down_proj": (inter, hidden)}


def adapter_tensors(params: Mapping[str, Any]) -> dict[str, Any]:
    lora = params["vision_lora"]
    seed, rank = int(params["seed"]), int(lora["r"])
    out = {}
    for layer in range(int(params["num_hidden_layers"])):
        for module, (fan_in, fan_out) in module_shapes(params).items():
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            out[f"{prefix}.lora_A.weight"] = _weights.normal(
                seed, f"{prefix}.lora_A", (rank, fan_in), _weights.fan_in_std((rank, fan_in)))
            out[f"{prefix}.lora_B.weight"] = _weights.normal(
                seed, f"{prefix}.lora_B", (fan_out, rank), B_STD)
    return out


def write_adapter(model_dir: pathlib.Path, params: Mapping[str, Any]) -> pathlib.Path:
    from safetensors.torch import save_file

    lora = params["vision_lora"]
    out = pathlib.Path(model_dir) / ADAPTER_DIR
    out.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": int(lora["r"]),
              "lora_alpha": int(lora["alpha"]), "lora_dropout": 0.0, "bias": "none",
              "target_modules": TARGET_REGEX, "base_model_name_or_path": None}
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(adapter_tensors(params), str(out / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    return out
