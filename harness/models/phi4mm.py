"""Tiny offline Phi-4-multimodal ("phi4mm") for vLLM's `Phi4MMForCausalLM` (trust_remote_code).

vLLM ships the model but not its config/processor: those are Microsoft's remote code. This builder
writes its own remote code (`phi4mm_remote/`: config class + processor with the same semantics) into
the model directory, a byte-level BPE tokenizer whose vocabulary reaches 200064 (so vLLM's hard-coded
placeholder ids 200010/200011 exist), and seeded weights with Microsoft's checkpoint names.

The SigLIP-so400m tower is hard-coded in vLLM (1152 wide); only its depth follows the config
(`img_processor.layer_idx`), so the tiny model keeps one ViT layer.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any, Mapping

from . import _tokenizer, _weights, phi4mm_lora

REMOTE_DIR = pathlib.Path(__file__).with_name("phi4mm_remote")
REMOTE_FILES = ("configuration_phi4mm.py", "processing_phi4mm.py")

VOCAB_SIZE = 200064
FIRST_SPECIAL_ID = 199999
IMAGE_TOKEN_ID = 200010
AUDIO_TOKEN_ID = 200011
MAX_MM_PLACEHOLDERS = 100  # vLLM's Phi4MMProcessingInfo.image_tokens / audio_tokens

# SigLIP-so400m-patch14-448 as hard-coded in vLLM's get_navit_vision_model().
SIGLIP = {"hidden_size": 1152, "intermediate_size": 4304, "image_size": 448, "patch_size": 14}

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}"
    "{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)

DEFAULT_PARAMS: dict[str, Any] = {
    "seed": 0,
    "bpe_vocab_size": 1000,
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 256,
    "rope_theta": 10000.0,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "vision_layers": 1,
    # At most `dynamic_hd` 448-px sub-crops per image (+1 global crop): with 2, a square
    # 448x448 image gets 2 crops and 640x160 / 300x900 / 1000x300 get 3, and the largest image
    # (817 tokens) leaves room for two images within max_model_len 2048.
    "dynamic_hd": 2,
    "audio": {
        "attention_dim": 32,
        "attention_heads": 2,
        "linear_units": 64,
        "num_blocks": 1,
        "time_reduction": 8,
    },
    "embedding_std": 0.1,
    # The vision LoRA shipped in `vision-lora/` (the real one: r 256, alpha 512).
    "vision_lora": {"r": 8, "alpha": 16},
}


def special_tokens() -> list[str]:
    """Added special tokens, in id order from 199999 to 200063 (Phi-4-mini/multimodal layout)."""
    named = {
        199999: "<|endoftext|>",
        200018: "<|endofprompt|>",
        200019: "<|assistant|>",
        200020: "<|end|>",
        200021: "<|user|>",
        200022: "<|system|>",
        200023: "<|tool|>",
        200024: "<|/tool|>",
        200025: "<|tool_call|>",
        200026: "<|/tool_call|>",
        200027: "<|tool_response|>",
        200028: "<|tag|>",
    }
    out = []
    for i in range(FIRST_SPECIAL_ID, VOCAB_SIZE):
        if i in named:
            out.append(named[i])
        elif 200000 <= i < 200018:
            out.append(f"<|endoftext{i - 200000}|>")
        else:
            out.append(f"<|dummy_id_{i - 200029}|>")
    assert out[IMAGE_TOKEN_ID - FIRST_SPECIAL_ID] == "<|endoftext10|>"
    assert out[AUDIO_TOKEN_ID - FIRST_SPECIAL_ID] == "<|endoftext11|>"
    return out


def placeholder_tokens() -> list[str]:
    return [f"<|image_{i}|>" for i in range(1, MAX_MM_PLACEHOLDERS + 1)] + [
        f"<|audio_{i}|>" for i in range(1, MAX_MM_PLACEHOLDERS + 1)
    ]


def full_vocab(bpe_vocab: dict[str, int]) -> dict[str, int]:
    """BPE vocab, then the `<|image_i|>`/`<|audio_i|>` placeholders, then fillers up to id 199998."""
    vocab = dict(bpe_vocab)
    assert sorted(vocab.values()) == list(range(len(vocab)))
    for t in placeholder_tokens():
        vocab[t] = len(vocab)
    while len(vocab) < FIRST_SPECIAL_ID:
        vocab[f"<|reserved_{len(vocab)}|>"] = len(vocab)
    return vocab


def audio_encoder_config(a: Mapping[str, Any]) -> dict[str, Any]:
    d = int(a["attention_dim"])
    return {
        "activation": "swish",
        "activation_checkpointing": {"interval": 1, "module": "transformer", "offload": False},
        "attention_dim": d,
        "attention_heads": int(a["attention_heads"]),
        "batch_norm": False,
        "bias_in_glu": True,
        "causal": True,
        "chunk_size": -1,
        "cnn_layer_norm": True,
        "conv_activation": "swish",
        "conv_glu_type": "swish",
        "depthwise_multiplier": 1,
        "depthwise_seperable_out_channel": d,
        "encoder_embedding_config": {"input_size": 80},
        "ext_pw_kernel_size": 1,
        "ext_pw_out_channel": d,
        "input_layer": "nemo_conv",
        "input_size": 80,
        "kernel_size": 3,
        "left_chunk": 18,
        "linear_units": int(a["linear_units"]),
        "nemo_conv_settings": {"conv_channels": d},
        "num_blocks": int(a["num_blocks"]),
        "relative_attention_bias_args": {"t5_bias_max_distance": 500, "type": "t5"},
        "time_reduction": int(a["time_reduction"]),
    }


def audio_param_shapes(a: Mapping[str, Any], hidden: int) -> dict[str, tuple[int, ...]]:
    """Names (relative to `model.embed_tokens_extend.audio_embed.`) and shapes of the audio tower,
    for `audio_encoder_config(a)` (conv channels = ext/depthwise channels = attention_dim)."""
    d, heads, units = int(a["attention_dim"]), int(a["attention_heads"]), int(a["linear_units"])
    red = int(a["time_reduction"])
    stages = red.bit_length() - 1
    assert 1 << stages == red
    feat = 80
    for _ in range(stages):
        feat = (feat + 2 * 1 - 3) // 2 + 1
    s: dict[str, tuple[int, ...]] = {
        "encoder.embed.out.weight": (d, d * feat),
        "encoder.embed.out.bias": (d,),
        "encoder.embed.conv.0.weight": (d, 1, 3, 3),
        "encoder.embed.conv.0.bias": (d,),
        "encoder.relative_attention_bias_layer.bias_values.weight": (1000, heads),
        "encoder.encoder_embedding.global_mean": (80,),
        "encoder.encoder_embedding.global_invstd": (80,),
    }
    for k in range(1, stages):
        dw, pw = 3 * k - 1, 3 * k
        s[f"encoder.embed.conv.{dw}.weight"] = (d, 1, 3, 3)
        s[f"encoder.embed.conv.{dw}.bias"] = (d,)
        s[f"encoder.embed.conv.{pw}.weight"] = (d, d, 1, 1)
        s[f"encoder.embed.conv.{pw}.bias"] = (d,)
    for b in range(int(a["num_blocks"])):
        p = f"encoder.encoders.{b}."
        for ff in ("feed_forward_in", "feed_forward_out"):
            s[p + ff + ".layer_norm.weight"] = (d,)
            s[p + ff + ".layer_norm.bias"] = (d,)
            s[p + ff + ".net.0.linear.weight"] = (2 * units, d)
            s[p + ff + ".net.0.linear.bias"] = (2 * units,)
            s[p + ff + ".net.2.weight"] = (d, units)
            s[p + ff + ".net.2.bias"] = (d,)
        for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
            s[p + f"self_attn.{lin}.weight"] = (d, d)
            s[p + f"self_attn.{lin}.bias"] = (d,)
        s[p + "conv.layer_norm.weight"] = (d,)
        s[p + "conv.layer_norm.bias"] = (d,)
        s[p + "conv.glu.b1"] = (1, d, 1)
        s[p + "conv.glu.b2"] = (1, d, 1)
        s[p + "conv.glu.ext_pw_conv_1d.weight"] = (2 * d, d, 1)
        s[p + "conv.glu.ext_pw_conv_1d.bias"] = (2 * d,)
        s[p + "conv.ext_pw_conv_1d.weight"] = (d, d, 1)
        s[p + "conv.ext_pw_conv_1d.bias"] = (d,)
        s[p + "conv.dw_sep_conv_1d.dw_conv.weight"] = (d, 1, 3)
        s[p + "conv.dw_sep_conv_1d.dw_conv.bias"] = (d,)
        s[p + "conv.dw_sep_conv_1d.pw_conv.weight"] = (d, d, 1)
        s[p + "conv.dw_sep_conv_1d.pw_conv.bias"] = (d,)
        for ln in ("layer_norm_att", "layer_norm"):
            s[p + f"{ln}.weight"] = (d,)
            s[p + f"{ln}.bias"] = (d,)
    for mode in ("speech", "vision"):
        s[f"audio_projection.{mode}.0.weight"] = (hidden, d)
        s[f"audio_projection.{mode}.0.bias"] = (hidden,)
        s[f"audio_projection.{mode}.2.weight"] = (hidden, hidden)
        s[f"audio_projection.{mode}.2.bias"] = (hidden,)
    return s


def _init_tensor(seed: int, name: str, shape: tuple[int, ...]):
    """Init rule by checkpoint name: norms 1/0, biases 0, audio global stats 0/1, else normal."""
    import torch

    last = name.rsplit(".", 1)[-1]
    norm = any(k in name for k in ("layernorm", "layer_norm", "model.norm."))
    if name.endswith("global_invstd"):
        return torch.ones(shape)
    if name.endswith("global_mean") or last in ("b1", "b2"):
        return torch.zeros(shape)
    if norm:
        return torch.ones(shape) if last == "weight" else torch.zeros(shape)
    if last == "bias":
        return torch.zeros(shape)
    if name.endswith(("glb_GN", "sub_GN")):
        return _weights.normal(seed, name, shape, 0.1)
    if "position_embedding" in name or "bias_values" in name:
        return _weights.normal(seed, name, shape, 0.02)
    return _weights.normal(seed, name, shape, _weights.fan_in_std(shape))


def state_dict(params: Mapping[str, Any], n_bpe: int) -> dict[str, Any]:
    """Checkpoint tensors with Microsoft's names (vLLM maps them with its hf_to_vllm_mapper)."""
    import torch

    seed = int(params["seed"])
    h = int(params["hidden_size"])
    nh, nkv = int(params["num_attention_heads"]), int(params["num_key_value_heads"])
    hd = h // nh
    inter = int(params["intermediate_size"])
    shapes: dict[str, tuple[int, ...]] = {"model.norm.weight": (h,)}
    for i in range(int(params["num_hidden_layers"])):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "self_attn.qkv_proj.weight"] = ((nh + 2 * nkv) * hd, h)
        shapes[p + "self_attn.o_proj.weight"] = (h, nh * hd)
        shapes[p + "mlp.gate_up_proj.weight"] = (2 * inter, h)
        shapes[p + "mlp.down_proj.weight"] = (h, inter)
    v = "model.embed_tokens_extend.image_embed."
    c, ci, ps = SIGLIP["hidden_size"], SIGLIP["intermediate_size"], SIGLIP["patch_size"]
    n_pos = (SIGLIP["image_size"] // ps) ** 2
    shapes[v + "img_processor.embeddings.patch_embedding.weight"] = (c, 3, ps, ps)
    shapes[v + "img_processor.embeddings.patch_embedding.bias"] = (c,)
    shapes[v + "img_processor.embeddings.position_embedding.weight"] = (n_pos, c)
    for i in range(int(params["vision_layers"])):
        p = v + f"img_processor.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = (c, c)
            shapes[p + f"self_attn.{proj}.bias"] = (c,)
        for ln in ("layer_norm1", "layer_norm2"):
            shapes[p + f"{ln}.weight"] = (c,)
            shapes[p + f"{ln}.bias"] = (c,)
        shapes[p + "mlp.fc1.weight"] = (ci, c)
        shapes[p + "mlp.fc1.bias"] = (ci,)
        shapes[p + "mlp.fc2.weight"] = (c, ci)
        shapes[p + "mlp.fc2.bias"] = (c,)
    shapes[v + "glb_GN"] = (1, 1, c)
    shapes[v + "sub_GN"] = (1, 1, 1, c)
    shapes[v + "img_projection.0.weight"] = (h, c)
    shapes[v + "img_projection.0.bias"] = (h,)
    shapes[v + "img_projection.2.weight"] = (h, h)
    shapes[v + "img_projection.2.bias"] = (h,)
    a = "model.embed_tokens_extend.audio_embed."
    for k, s in audio_param_shapes(params["audio"], h).items():
        shapes[a + k] = s

    tensors = {name: _init_tensor(seed, name, shapes[name]) for name in sorted(shapes)}
    # Tied input/output embedding: only the trained BPE rows are non-zero. Placeholders, fillers and
    # special tokens get logit 0, so greedy decoding picks real text tokens (never EOS, never
    # tokens that decode to nothing). Image/audio placeholder rows are replaced by embeddings anyway.
    emb = torch.zeros((VOCAB_SIZE, h))
    emb[:n_bpe] = _weights.normal(seed, "model.embed_tokens.weight", (n_bpe, h), float(params["embedding_std"]))
    tensors["model.embed_tokens.weight"] = emb
    return {k: tensors[k].to(torch.float32).contiguous() for k in sorted(tensors)}


def build(out: pathlib.Path, params: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    out = pathlib.Path(out)
    h = int(params["hidden_size"])
    assert h % int(params["num_attention_heads"]) == 0

    # --- tokenizer -------------------------------------------------------------------------
    regex = _tokenizer.O200K_PRETOKENIZE_REGEX
    bpe_vocab, merges = _tokenizer.train_bpe(int(params["bpe_vocab_size"]), regex)
    specials = special_tokens()
    tok_json = _tokenizer.build_tokenizer_json(
        full_vocab(bpe_vocab), merges, regex, specials, extra_tokens=placeholder_tokens()
    )
    (out / "tokenizer.json").write_text(tok_json, encoding="utf-8")
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": _tokenizer.added_tokens_decoder(tok_json),
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(params["max_position_embeddings"]),
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, sort_keys=True) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({k: tok_cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
                   indent=2, sort_keys=True) + "\n"
    )
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")

    # --- remote code + configs -------------------------------------------------------------------
    for f in REMOTE_FILES:
        shutil.copyfile(REMOTE_DIR / f, out / f)
    a = params["audio"]
    config = {
        "architectures": ["Phi4MMForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_phi4mm.Phi4MMConfig"},
        "model_type": "phi4mm",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": h,
        "intermediate_size": int(params["intermediate_size"]),
        "num_hidden_layers": int(params["num_hidden_layers"]),
        "num_attention_heads": int(params["num_attention_heads"]),
        "num_key_value_heads": int(params["num_key_value_heads"]),
        "hidden_act": "silu",
        "max_position_embeddings": int(params["max_position_embeddings"]),
        "original_max_position_embeddings": int(params["max_position_embeddings"]),
        "rms_norm_eps": float(params["rms_norm_eps"]),
        "rope_theta": float(params["rope_theta"]),
        "rope_scaling": None,
        "partial_rotary_factor": 1.0,
        "attention_bias": False,
        "mlp_bias": False,
        "lm_head_bias": False,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attention_dropout": 0.0,
        "sliding_window": None,
        "use_cache": True,
        "bos_token_id": 199999,
        "eos_token_id": 199999,
        "pad_token_id": 199999,
        "torch_dtype": "float32",
        # As in Microsoft's config; without it transformers 5 warns about a "Mistral regex".
        "transformers_version": "4.46.1",
        "img_processor": {
            "name": "siglip-so400m-patch14-448",
            "layer_idx": int(params["vision_layers"]) - 1,
            "type_feature": "patch",
        },
        "embd_layer": {
            "audio_embd_layer": {
                "compression_rate": int(a["time_reduction"]),
                "downsample_rate": 1,
                "embedding_cls": "audio",
                "enable_gradient_checkpointing": False,
                "projection_cls": "mlp",
                "use_conv_downsample": False,
                "use_qformer": False,
            },
            "embedding_cls": "image_audio",
            "image_embd_layer": {
                "crop_size": 448,
                "embedding_cls": "tune_image",
                "enable_gradient_checkpointing": False,
                "hd_transform_order": "sub_glb",
                "image_token_compression_cls": "avg_pool_2d",
                "projection_cls": "mlp",
                "use_hd_transform": True,
                "with_learnable_separator": True,
            },
        },
        "audio_processor": {"name": "cascades", "config": audio_encoder_config(a)},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    gen = {"bos_token_id": 199999, "eos_token_id": [200020, 199999], "pad_token_id": 199999}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    auto_map = {
        "AutoProcessor": "processing_phi4mm.Phi4MMProcessor",
        "AutoImageProcessor": "processing_phi4mm.Phi4MMImageProcessor",
        "AutoFeatureExtractor": "processing_phi4mm.Phi4MMAudioFeatureExtractor",
    }
    pre = {
        "auto_map": auto_map,
        "processor_class": "Phi4MMProcessor",
        "image_processor_type": "Phi4MMImageProcessor",
        "feature_extractor_type": "Phi4MMAudioFeatureExtractor",
        "dynamic_hd": int(params["dynamic_hd"]),
        "audio_compression_rate": int(a["time_reduction"]),
        "audio_downsample_rate": 1,
        "audio_feat_stride": 1,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2, sort_keys=True) + "\n")
    (out / "processor_config.json").write_text(
        json.dumps({"auto_map": {"AutoProcessor": auto_map["AutoProcessor"]}, "processor_class": "Phi4MMProcessor"},
                   indent=2, sort_keys=True) + "\n"
    )

    # --- weights ---------------------------------------------------------------------------
    save_file(state_dict(params, len(bpe_vocab)), str(out / "model.safetensors"), metadata={"format": "pt"})
    phi4mm_lora.write_adapter(out, params)
