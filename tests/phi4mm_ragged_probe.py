"""Probe: does vLLM feed Phi4MM's image encoder a ragged batch (masks with different crop counts)?

    VLLM_ENABLE_V1_MULTIPROCESSING=0 python -m tests.phi4mm_ragged_probe MODEL_DIR

Runs offline vLLM in this process (the engine core must be in-process for the wrapper to see the
calls) on several requests with images of different sizes in ONE `LLM.chat` call, with
`mm_processor_cache_gb=0, enable_prefix_caching=False`, and wraps
`Phi4MMForCausalLM._process_image_input` (vllm/model_executor/models/phi4mm.py) to record, per
encoder call, the shapes of `image_attention_mask` (a list of [n_crops, 32, 32] tensors when the
batch is ragged, one stacked tensor otherwise). Prints one JSON line prefixed with `PROBE_RESULT `.
"""

from __future__ import annotations

import json
import os
import sys
import time

SIZES = [(640, 160), (448, 448), (300, 900), (1000, 300)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir = argv[0]
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

    import numpy as np
    from PIL import Image
    from vllm import LLM, SamplingParams
    from vllm.model_executor.models import phi4mm as vphi

    calls: list[dict] = []
    orig = vphi.Phi4MMForCausalLM._process_image_input

    def _shapes(x):
        if isinstance(x, (list, tuple)):
            return {"type": "list", "shapes": [list(t.shape) for t in x]}
        return {"type": "tensor", "shapes": [list(x.shape)]}

    def wrapped(self, image_input):
        calls.append(
            {
                "image_attention_mask": _shapes(image_input["image_attention_mask"]),
                "pixel_values": _shapes(image_input["pixel_values"]),
                "image_sizes": [list(map(int, s)) for s in image_input["image_sizes"]],
            }
        )
        return orig(self, image_input)

    vphi.Phi4MMForCausalLM._process_image_input = wrapped

    t0 = time.time()
    llm = LLM(
        model=model_dir,
        trust_remote_code=True,
        dtype="float32",
        enforce_eager=True,
        max_model_len=2048,
        max_num_seqs=2,
        limit_mm_per_prompt={"image": 2, "audio": 0},
        mm_processor_cache_gb=0,
        enable_prefix_caching=False,
    )
    t_ready = time.time() - t0

    def image(w, h, seed):
        rng = np.random.default_rng(seed)
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    convs = [
        [{"role": "user", "content": [{"type": "image_pil", "image_pil": image(w, h, i)},
                                      {"type": "text", "text": "Describe the image."}]}]
        for i, (w, h) in enumerate(SIZES)
    ]
    t1 = time.time()
    outs = llm.chat(convs, SamplingParams(temperature=0, max_tokens=4, logprobs=5))
    t_chat = time.time() - t1
    ragged = [
        c for c in calls
        if c["image_attention_mask"]["type"] == "list"
        and len({tuple(s) for s in c["image_attention_mask"]["shapes"]}) > 1
    ]
    result = {
        "engine_ready_s": round(t_ready, 1),
        "chat_s": round(t_chat, 2),
        "encoder_calls": calls,
        "ragged_calls": len(ragged),
        "texts": [o.outputs[0].text for o in outs],
    }
    print("PROBE_RESULT " + json.dumps(result), flush=True)
    return 0 if ragged else 1


if __name__ == "__main__":
    sys.exit(main())
