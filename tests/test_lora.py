"""Phi4MM's vision LoRA: the tiny adapter's layout, the case's wiring and the lora_applied check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.models.phi4mm import DEFAULT_PARAMS
from harness.models.phi4mm_lora import TARGET_REGEX, adapter_tensors, write_adapter
from harness.plan import plan_job
from harness.results import RequestResult
from harness.spec.case import SpecError, load_case, load_platforms
from harness.worker.checks import Observed, evaluate
from harness.worker.server import ServerEngine
from tests.conftest import CASES

PHI = CASES / "phi4mm_variable_crop.yaml"


def test_adapter_has_the_measured_names_and_shapes(tmp_path):
    tensors = adapter_tensors(DEFAULT_PARAMS)
    prefix = "base_model.model.model.layers.0"
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if name.startswith(prefix)}
    assert shapes == {  # ../shared/notes/phi4mm-lora.md, rank 8
        f"{prefix}.self_attn.qkv_proj.lora_A.weight": (8, 128),
        f"{prefix}.self_attn.qkv_proj.lora_B.weight": (256, 8),
        f"{prefix}.self_attn.o_proj.lora_A.weight": (8, 128),
        f"{prefix}.self_attn.o_proj.lora_B.weight": (128, 8),
        f"{prefix}.mlp.gate_up_proj.lora_A.weight": (8, 128),
        f"{prefix}.mlp.gate_up_proj.lora_B.weight": (512, 8),
        f"{prefix}.mlp.down_proj.lora_A.weight": (8, 256),
        f"{prefix}.mlp.down_proj.lora_B.weight": (128, 8),
    }
    assert len(tensors) == 8 * DEFAULT_PARAMS["num_hidden_layers"]
    out = write_adapter(tmp_path, DEFAULT_PARAMS)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["lora_alpha"] == 16
    assert config["target_modules"] == TARGET_REGEX
    size = (out / "adapter_model.safetensors").stat().st_size
    assert 90_000 < size < 130_000  # ~108 KB, as measured
    again = adapter_tensors(DEFAULT_PARAMS)  # seeded: the same bytes every build
    assert all((again[k] == tensors[k]).all() for k in tensors)


def test_case_runs_the_lora_on_cpu_and_vllms_config_on_gpus():
    case = load_case(PHI)
    platforms = load_platforms(CASES / "platforms.yaml")
    assert case.engine.lora.name == "vision" and case.engine.lora.path == "vision-lora"
    cpu, rocm = plan_job(case, platforms["cpu"]), plan_job(case, platforms["rocm"])
    assert cpu.engine_args["enable_lora"] is True and cpu.engine_args["max_lora_rank"] == 8
    for gpu in (rocm, plan_job(case, platforms["cuda"])):
        args = gpu.engine_args
        assert args["enable_lora"] is True and args["max_lora_rank"] == 320
        assert args["max_model_len"] == 12800 and args["max_num_batched_tokens"] == 12800
        assert args["mm_processor_kwargs"] == {"dynamic_hd": 16}
        assert args["trust_remote_code"] is True


def test_qwen_gpu_config_matches_vllms_vit_cudagraph_test():
    case = load_case(CASES / "qwen2_5_vl_vit_cudagraph.yaml")
    platforms = load_platforms(CASES / "platforms.yaml")
    args = plan_job(case, platforms["rocm"]).engine_args
    assert args["compilation_config"] == {"cudagraph_mm_encoder": True,
                                          "encoder_cudagraph_max_vision_items_per_batch": 1,
                                          "encoder_cudagraph_max_frames_per_batch": 16}
    assert args["max_model_len"] == 4096 and args["dtype"] == "bfloat16"
    cpu = plan_job(case, platforms["cpu"]).engine_args
    assert cpu["compilation_config"] == {"cudagraph_mm_encoder": True}


def test_lora_check_without_engine_lora_is_an_input_error(cases_copy: Path):
    path = cases_copy / "phi4mm_variable_crop.yaml"
    path.write_text(path.read_text().replace("  lora: {name: vision, path: vision-lora}\n", ""))
    with pytest.raises(SpecError, match="lora_applied check needs `engine.lora`"):
        load_case(path)


def requests(*ids: str) -> list[RequestResult]:
    return [RequestResult(id=i, ok=True, token_ids=[1]) for i in ids]


def lora_check(traces: dict, ids=("a", "b")):
    case = load_case(PHI)
    check = next(c for c in case.checks if c.kind == "lora_applied")
    observed = Observed(capabilities=set(), startup_s=1.0, requests=requests(*ids),
                        log_text="", traces=traces)
    return evaluate([check], observed)[0]


def test_lora_check_passes_only_when_loaded_and_named_by_every_request():
    good = {"lora": {"adapter": "vision", "loaded": ["vision"],
                     "requests": {"a": "vision", "b": "vision"}}}
    assert lora_check(good).outcome == "passed"
    not_loaded = {"lora": {**good["lora"], "loaded": []}}
    assert "not among the engine's loaded" in lora_check(not_loaded).message
    one_base = {"lora": {**good["lora"], "requests": {"a": "vision", "b": None}}}
    result = lora_check(one_base)
    assert result.outcome == "failed" and "['b']" in result.message
    assert lora_check({}).outcome == "failed"


def test_server_registers_the_adapter_and_requests_name_it(tmp_path):
    engine = ServerEngine("m", {"enable_lora": True}, {}, tmp_path / "log", 1, 1,
                          lora={"name": "vision", "path": "/snap/vision-lora"})
    argv = engine.argv()
    assert argv[-3:] == ["--enable-lora", "--lora-modules", "vision=/snap/vision-lora"]
    assert engine.served_name == "vision"
    assert ServerEngine("m", {}, {}, tmp_path / "log", 1, 1).served_name == "harness-model"
