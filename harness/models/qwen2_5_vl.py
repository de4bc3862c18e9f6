"""Tiny offline Qwen2.5-VL (vLLM `Qwen2_5_VLForConditionalGeneration`, transformers-loadable)."""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping

from . import _tokenizer, _weights

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The Qwen2-VL chat template (as shipped with Qwen2-VL / Qwen2.5-VL).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

DEFAULT_PARAMS: dict[str, Any] = {
    "seed": 0,
    "bpe_vocab_size": 1000,
    "text": {
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 256,
        "rope_theta": 1000000.0,
        "mrope_section": [8, 12, 12],
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
    },
    "vision": {
        "depth": 2,
        "hidden_size": 128,
        "num_heads": 2,
        "intermediate_size": 256,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [1],
        "hidden_act": "silu",
        "tokens_per_second": 2,
    },
    "min_pixels": 3136,
    "max_pixels": 50176,
    "embedding_std": 0.1,
}


def build(out: pathlib.Path, params: Mapping[str, Any]) -> None:
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out = pathlib.Path(out)
    seed = int(params["seed"])
    tp, vp = params["text"], params["vision"]

    # --- tokenizer -------------------------------------------------------------------------
    vocab, merges = _tokenizer.train_bpe(int(params["bpe_vocab_size"]), _tokenizer.QWEN2_PRETOKENIZE_REGEX)
    tok_json = _tokenizer.build_tokenizer_json(vocab, merges, _tokenizer.QWEN2_PRETOKENIZE_REGEX, SPECIAL_TOKENS)
    (out / "tokenizer.json").write_text(tok_json, encoding="utf-8")
    ids = {t: len(vocab) + i for i, t in enumerate(SPECIAL_TOKENS)}
    vocab_size = len(vocab) + len(SPECIAL_TOKENS)
    tok_cfg = {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_prefix_space": False,
        "added_tokens_decoder": _tokenizer.added_tokens_decoder(tok_json),
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": int(tp["max_position_embeddings"]),
        "split_special_tokens": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, sort_keys=True) + "\n")

    # --- config + weights -------------------------------------------------------------------
    head_dim = tp["hidden_size"] // tp["num_attention_heads"]
    assert sum(tp["mrope_section"]) * 2 == head_dim, "mrope_section must sum to head_dim/2"
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": tp["hidden_size"],
        "intermediate_size": tp["intermediate_size"],
        "num_hidden_layers": tp["num_hidden_layers"],
        "num_attention_heads": tp["num_attention_heads"],
        "num_key_value_heads": tp["num_key_value_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": tp["max_position_embeddings"],
        "rms_norm_eps": tp["rms_norm_eps"],
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": tp["rope_theta"],
            "mrope_section": list(tp["mrope_section"]),
        },
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_config = {
        "depth": vp["depth"],
        "hidden_size": vp["hidden_size"],
        "num_heads": vp["num_heads"],
        "intermediate_size": vp["intermediate_size"],
        "patch_size": vp["patch_size"],
        "spatial_merge_size": vp["spatial_merge_size"],
        "temporal_patch_size": vp["temporal_patch_size"],
        "window_size": vp["window_size"],
        "fullatt_block_indexes": list(vp["fullatt_block_indexes"]),
        "hidden_act": vp["hidden_act"],
        "tokens_per_second": vp["tokens_per_second"],
        "out_hidden_size": tp["hidden_size"],
        "in_channels": 3,
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    _weights.init_module_(model, seed, embedding_std=float(params["embedding_std"]))
    with torch.no_grad():
        # Special tokens never win greedy decoding (logit 0 against positive maxima): generations
        # neither stop early nor decode to empty text.
        lm_head = model.get_output_embeddings().weight
        for t in SPECIAL_TOKENS:
            lm_head[ids[t]].zero_()
    model.config.dtype = torch.float32
    model.save_pretrained(out, safe_serialization=True)
    if (out / "generation_config.json").exists():
        (out / "generation_config.json").unlink()
    gen = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
           "pad_token_id": ids["<|endoftext|>"], "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")

    # --- processor -------------------------------------------------------------------------
    tokenizer = AutoTokenizer.from_pretrained(out)
    size = {"shortest_edge": int(params["min_pixels"]), "longest_edge": int(params["max_pixels"])}
    common = dict(
        patch_size=vp["patch_size"],
        temporal_patch_size=vp["temporal_patch_size"],
        merge_size=vp["spatial_merge_size"],
        min_pixels=int(params["min_pixels"]),
        max_pixels=int(params["max_pixels"]),
        size=size,
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**common),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**common),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
