"""`server` mode: vLLM's OpenAI-compatible server as a child process on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from harness import proc
from harness.signatures.exits import classify_exit
from harness.results import RequestResult, TopLogprob
from harness.worker.engine import EngineFailure, PreparedRequest, cli_args

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerEngine:
    def __init__(self, model: str, args: dict[str, Any], env: dict[str, str], log_path: Path,
                 startup_timeout_s: float, request_timeout_s: float, python: str = sys.executable,
                 lora: dict[str, str] | None = None):
        self.model, self.args, self.env = model, args, env
        # {"name", "path"}: registered with --lora-modules, named by every request.
        self.lora = lora
        self._lora_record: dict[str, Any] = {}
        self.log_path = log_path
        self.startup_timeout_s, self.request_timeout_s = startup_timeout_s, request_timeout_s
        self.python = python
        self.port = 0
        self.startup_s = 0.0
        self.requests_s: float | None = None
        self._proc: subprocess.Popen | None = None
        self._watch: proc.MemoryWatch | None = None
        self.ready_log_offset = 0  # where the log stood when the server became ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                "--served-model-name", "harness-model", "--host", "127.0.0.1",
                "--port", str(self.port), *cli_args(self.args), *self._lora_args()]

    def _lora_args(self) -> list[str]:
        return ["--lora-modules", f"{self.lora['name']}={self.lora['path']}"] if self.lora else []

    @property
    def served_name(self) -> str:
        return self.lora["name"] if self.lora else "harness-model"

    def start(self) -> None:
        self.port = free_port()
        began = time.monotonic()
        self._proc = proc.start(self.argv(), self.log_path, env=self.env)
        self._watch = proc.MemoryWatch(self._proc.pid)
        deadline = began + self.startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                text = proc.read_tail(self.log_path)
                self.stop()
                raise EngineFailure(classify_exit(code, text),
                                    f"server exited with code {code} before it was ready")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise EngineFailure("startup-timeout",
                                    f"server not ready within {self.startup_timeout_s:.0f} s")
            time.sleep(1.0)
        self.startup_s = time.monotonic() - began
        self.ready_log_offset = proc.log_size(self.log_path)
        if self.lora:
            self._lora_record = {"adapter": self.lora["name"], "path": self.lora["path"],
                                 "loaded": self._served_models(), "requests": {}}

    def _served_models(self) -> list[str]:
        """Model ids the server lists: a LoRA module appears once vLLM has loaded it."""
        try:
            listing = requests.get(f"{self.url}/v1/models", timeout=10).json()
            return [m["id"] for m in listing.get("data", [])]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return []

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def generate(self, prepared: list[PreparedRequest], top_k: int) -> list[RequestResult]:
        began = time.monotonic()
        results = [self._one(request, top_k) for request in prepared]
        self.requests_s = time.monotonic() - began
        return [r.model_copy(update={"text_only_prompt_tokens": self._text_only_tokens(q)})
                if r.ok else r for r, q in zip(results, prepared)]

    def _text_only_tokens(self, request: PreparedRequest) -> int | None:
        """The same prompt without its images, through the server's own chat template."""
        from harness.worker.offline_child import text_only_messages

        body = {"model": "harness-model", "messages": text_only_messages(request.messages),
                "add_generation_prompt": True}
        try:
            response = requests.post(f"{self.url}/tokenize", json=body,
                                     timeout=self.request_timeout_s)
            return int(response.json()["count"]) if response.status_code == 200 else None
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None

    def _one(self, request: PreparedRequest, top_k: int) -> RequestResult:
        body = {"model": self.served_name, "messages": request.messages,
                "max_tokens": request.max_tokens, "temperature": 0.0, "seed": 0,
                "logprobs": True, "top_logprobs": top_k,
                # vLLM extension: tokens as "token_id:N", so outputs compare by id.
                "return_tokens_as_token_ids": True}
        began = time.monotonic()
        base = RequestResult(id=request.id, ok=False, images=request.images,
                             image_sizes=request.image_sizes)
        try:
            response = requests.post(f"{self.url}/v1/chat/completions", json=body,
                                     timeout=self.request_timeout_s)
        except requests.RequestException as exc:
            if not self.alive():
                raise EngineFailure("crash", f"server died during request {request.id}") from exc
            return base.model_copy(update={"error": f"{type(exc).__name__}: {exc}",
                                           "latency_s": time.monotonic() - began})
        latency = time.monotonic() - began
        if response.status_code != 200:
            return base.model_copy(update={
                "error": f"HTTP {response.status_code}: {response.text[:2000]}",
                "latency_s": latency})
        payload = response.json()
        if self.lora:  # the model (adapter) the server says answered this request
            self._lora_record["requests"][request.id] = payload.get("model")
        return parse_chat_response(payload, base, latency)

    def traces(self) -> dict[str, Any]:
        # In-engine traces need the offline (in-process) mode; the LoRA record is the server's.
        return {"lora": self._lora_record} if self._lora_record else {}

    def mutations(self) -> list[str]:
        return []

    def reset_peak(self) -> None:
        """A reused engine's peak starts again with each job."""
        if self._watch is not None:
            self._watch.reset()

    def peak_rss_mb(self) -> float | None:
        return self._watch.peak_mb if self._watch is not None else None

    def stop(self) -> int | None:
        if self._watch is not None:
            self._watch.close()
        if self._proc is None:
            return None
        code = proc.stop(self._proc)
        self._proc = None
        return code


def _token_id(token: str) -> int:
    if not token.startswith("token_id:"):
        raise ValueError(f"expected 'token_id:N', got {token!r}")
    return int(token.split(":", 1)[1])


def parse_chat_response(payload: dict[str, Any], base: RequestResult,
                        latency: float) -> RequestResult:
    choice = payload["choices"][0]
    content = (choice.get("logprobs") or {}).get("content") or []
    token_ids = [_token_id(item["token"]) for item in content]
    logprobs = []
    for item in content:
        alternatives = [TopLogprob(token_id=_token_id(top["token"]), logprob=top["logprob"])
                        for top in item.get("top_logprobs") or []]
        sampled = _token_id(item["token"])
        if all(alt.token_id != sampled for alt in alternatives):
            alternatives.append(TopLogprob(token_id=sampled, logprob=item["logprob"]))
        logprobs.append(alternatives)
    text = choice["message"].get("content") or ""
    return base.model_copy(update={
        "ok": True, "text": text, "token_ids": token_ids, "logprobs": logprobs,
        "prompt_tokens": (payload.get("usage") or {}).get("prompt_tokens"),
        "finish_reason": choice.get("finish_reason"), "latency_s": latency})
