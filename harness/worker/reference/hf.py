"""Generate a case's requests with Hugging Face transformers in fp32: the `hf` reference.

On CPU by default; ``device="cuda"`` runs it on the node's GPU (ROCm builds of torch call the GPU
"cuda" too), as vLLM's own ``HfRunner`` does, so a GPU node checks its reference against the CPU
one and the platform against a reference made on the same chip.

The inputs are the very chat messages the vLLM side sends (``harness.worker.inputs``): images
are decoded from the same lossless PNG data URLs, and the prompt is rendered by the model's own
processor chat template, so both sides see the same prompt tokens (the comparison checks it).
Decoding is greedy, one request at a time (batch padding would perturb the numbers), and the
logprobs are ``log_softmax`` of the raw logits, as vLLM reports them by default.

Only this module imports torch and transformers.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.results import RequestResult, TopLogprob
from harness.worker.engine import PreparedRequest


class ReferenceUnavailable(Exception):
    """The model has no native transformers implementation (remote code, unknown class)."""


def architecture(model_dir: Path | str) -> str:
    config = Path(model_dir) / "config.json"
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (OSError, json.JSONDecodeError) as exc:
        raise ReferenceUnavailable(f"{config}: cannot read the architecture: {exc}") from None
    if not architectures:
        raise ReferenceUnavailable(f"{config}: no `architectures` entry")
    return architectures[0]


def image_from_data_url(url: str):
    from PIL import Image

    if not url.startswith("data:") or ";base64," not in url:
        raise ValueError("the reference reads images from base64 data URLs only")
    payload = base64.b64decode(url.split(";base64,", 1)[1])
    return Image.open(io.BytesIO(payload)).convert("RGB")


def split_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list]:
    """OpenAI-style messages -> (transformers chat messages with image slots, PIL images)."""
    converted, images = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            converted.append(message)
            continue
        parts = []
        for part in content:
            if part.get("type") == "image_url":
                images.append(image_from_data_url(part["image_url"]["url"]))
                parts.append({"type": "image"})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
            else:
                raise ValueError(f"the reference cannot feed content of type {part.get('type')!r}")
        converted.append({**message, "content": parts})
    return converted, images


@dataclass
class HfModel:
    model: Any
    processor: Any
    eos_ids: set[int]
    load_s: float
    architecture: str = ""
    transformers_version: str = ""
    device: str = "cpu"
    device_name: str = "cpu"


def device_name(device: str) -> str:
    """The device's own name ('NVIDIA H200', 'AMD Instinct MI300X'); raises
    ReferenceUnavailable when torch sees no such device."""
    import torch

    if device == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise ReferenceUnavailable(f"torch {torch.__version__} sees no GPU for device "
                                   f"{device!r} (torch.cuda.is_available() is False)")
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        raise ReferenceUnavailable(f"torch sees {torch.cuda.device_count()} GPU(s): "
                                   f"no device {device!r}")
    return torch.cuda.get_device_name(index)


def strict_fp32() -> None:
    """Full fp32 on the GPU too: PyTorch lets cuDNN convolutions use TF32 by default (10-bit
    mantissa), which moved the tiny Qwen reference on an H200 by up to 1.4e-3 in logprob against
    the CPU's; with TF32 off the two agreed to 2.9e-6. A reference must be the exact side."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def load(model: str, log: Callable[[str], None] = lambda line: None,
         device: str = "cpu") -> HfModel:
    """A local directory or hub id; the class must be one transformers ships (no remote code)."""
    import torch
    import transformers

    name = device_name(device)
    strict_fp32()

    began = time.monotonic()
    local = Path(model)
    if local.is_dir():
        arch = architecture(local)
    else:
        arch = transformers.AutoConfig.from_pretrained(model).architectures[0]
    model_class = getattr(transformers, arch, None)
    if model_class is None:
        raise ReferenceUnavailable(f"transformers {transformers.__version__} has no native "
                                   f"{arch}; a reference would need the model's remote code")
    log(f"loading {arch} from {model} (fp32, TF32 off, {device}: {name})")
    torch.manual_seed(0)
    loaded = model_class.from_pretrained(model, dtype=torch.float32).to(device).eval()
    processor = transformers.AutoProcessor.from_pretrained(model)
    eos = loaded.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return HfModel(loaded, processor, eos_ids, time.monotonic() - began, arch,
                   transformers.__version__, device, name)


def generate(hf: HfModel, request: PreparedRequest, top_k: int) -> RequestResult:
    import torch

    messages, images = split_messages(request.messages)
    prompt = hf.processor.apply_chat_template(messages, add_generation_prompt=True,
                                              tokenize=False)
    inputs = hf.processor(text=[prompt], images=images or None, return_tensors="pt").to(hf.device)
    prompt_len = int(inputs["input_ids"].shape[1])
    began = time.monotonic()
    with torch.inference_mode():
        out = hf.model.generate(**inputs, max_new_tokens=request.max_tokens, do_sample=False,
                                num_beams=1, output_logits=True, return_dict_in_generate=True)
    latency = time.monotonic() - began
    generated = [int(t) for t in out.sequences[0, prompt_len:]]
    tokenizer = hf.processor.tokenizer
    logprobs = []
    for step, token_id in enumerate(generated):
        lp = torch.log_softmax(out.logits[step][0].float(), dim=-1).cpu()
        values, ids = torch.topk(lp, top_k)
        alternatives = [TopLogprob(token_id=int(i), logprob=float(v),
                                   token=tokenizer.decode([int(i)]))
                        for v, i in zip(values, ids)]
        if all(alt.token_id != token_id for alt in alternatives):
            alternatives.append(TopLogprob(token_id=token_id, logprob=float(lp[token_id]),
                                           token=tokenizer.decode([token_id])))
        logprobs.append(alternatives)
    finish = "stop" if generated and generated[-1] in hf.eos_ids else "length"
    return RequestResult(
        id=request.id, ok=bool(generated), error="" if generated else "no tokens generated",
        images=request.images, image_sizes=request.image_sizes,
        text=tokenizer.decode(generated, skip_special_tokens=True), token_ids=generated,
        logprobs=logprobs, prompt_tokens=prompt_len, finish_reason=finish, latency_s=latency)
