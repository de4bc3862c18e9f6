"""Runs inside the engine's process: `vllm.LLM`, all prompts in one `chat()` call.

One call is the point: it is what puts images of different crop counts into one encoder batch
(Phi4MM), deterministically. Usage: ``python -m harness.worker.offline_child SPEC.json OUT.json``.
OUT.json is written atomically at each phase, so a crash still says where it happened.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from harness.results import write_atomic


def _write(out: Path, state: dict) -> None:
    write_atomic(out, json.dumps(state, indent=1))


def _logprobs(position: dict) -> list[dict]:
    ranked = sorted(position.items(), key=lambda kv: (kv[1].rank or 0, -kv[1].logprob))
    return [{"token_id": int(token_id), "logprob": float(lp.logprob),
             "token": lp.decoded_token or ""} for token_id, lp in ranked]


def text_only_messages(messages: list[dict]) -> list[dict]:
    """The same conversation with every image left out (text parts joined)."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        out.append({"role": message["role"], "content": content})
    return out


def _text_only_tokens(llm, messages: list[dict]) -> int | None:
    """Prompt length of the text alone, through the engine's own tokenizer and chat template."""
    try:
        ids = llm.get_tokenizer().apply_chat_template(
            text_only_messages(messages), add_generation_prompt=True, tokenize=True)
    except Exception:  # a template that needs the image; token_counts then says "not known"
        return None
    if isinstance(ids, dict):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return len(ids)


LORA_ID = 1


def lora_record(llm, lora, requests: list[dict], outputs) -> dict:
    """What the engine itself says: the adapter ids it holds, and each output's LoRA."""
    loaded_ids = sorted(llm.llm_engine.list_loras())
    return {"adapter": lora.lora_name, "path": lora.lora_path, "loaded_ids": loaded_ids,
            "loaded": [lora.lora_name] if LORA_ID in loaded_ids else [],
            "requests": {r["id"]: (o.lora_request.lora_name if o.lora_request else None)
                         for r, o in zip(requests, outputs)}}


def main(spec_path: str, out_path: str) -> int:
    # In-process engine core, so traces patched here see the model's real calls.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    spec = json.loads(Path(spec_path).read_text())
    out = Path(out_path)
    state: dict = {"phase": "startup", "traces": {}, "mutations": []}
    _write(out, state)
    try:
        import vllm  # noqa: F401  (vLLM itself failing to import is vLLM's failure: a crash)

        from harness.worker.traces import apply_mutations_from_env, install_traces, set_phase

        # "patch": the harness's own traces and mutations are being installed; a failure there
        # (a private vLLM method renamed) is the harness's, not a verdict on vLLM.
        state["phase"] = "patch"
        _write(out, state)
        records = install_traces(spec["traces"])
        state["mutations"] = apply_mutations_from_env()
        state["phase"] = "startup"
        _write(out, state)
        from vllm import LLM, SamplingParams

        began = time.monotonic()
        llm = LLM(model=spec["model"], **spec["args"])
        state.update(phase="generate", startup_s=time.monotonic() - began, ready_at=time.time())
        _write(out, state)
        requests = spec["requests"]
        params = [SamplingParams(temperature=0.0, max_tokens=r["max_tokens"], seed=0,
                                 logprobs=spec["top_k"]) for r in requests]
        lora = None
        if spec.get("lora"):  # on every request, as vLLM's Phi-4-multimodal test and example
            from vllm.lora.request import LoRARequest

            lora = LoRARequest(spec["lora"]["name"], LORA_ID, spec["lora"]["path"])
        set_phase("requests")  # trace records from here on hold the case's own images
        began = time.monotonic()
        outputs = llm.chat([r["messages"] for r in requests], params, use_tqdm=False,
                           lora_request=lora)
        state["generate_s"] = time.monotonic() - began
        set_phase("after")
        text_only = [_text_only_tokens(llm, r["messages"]) for r in requests]
        if lora is not None:
            records["lora"] = lora_record(llm, lora, requests, outputs)
        state["requests"] = [{
            "id": r["id"], "text": o.outputs[0].text,
            "token_ids": list(map(int, o.outputs[0].token_ids)),
            "logprobs": [_logprobs(p) for p in (o.outputs[0].logprobs or [])],
            "prompt_tokens": len(o.prompt_token_ids or []),
            "text_only_prompt_tokens": n_text,
            "finish_reason": o.outputs[0].finish_reason,
        } for r, o, n_text in zip(requests, outputs, text_only)]
        state["traces"] = records
        state["phase"] = "done"
        _write(out, state)
        return 0
    except BaseException as exc:  # recorded, then re-raised so the traceback reaches the log
        state["error"] = f"{type(exc).__name__}: {exc}"
        state["traceback"] = traceback.format_exc()[-4000:]
        state["traces"] = locals().get("records", {})
        _write(out, state)
        raise


if __name__ == "__main__":
    code = main(sys.argv[1], sys.argv[2])
    # Everything is written: skip the interpreter's teardown of a loaded engine (seconds of
    # thread joins and destructors that only delay the job). Failures exit normally above.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
