"""`offline` mode: `vllm.LLM` in a worker subprocess (own process group, deadline, log file)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from harness import proc
from harness.outcomes import classify_exit
from harness.results import RequestResult, TopLogprob
from harness.worker.engine import EngineFailure, PreparedRequest


class OfflineEngine:
    """Starts nothing up front: the child builds the engine and generates in one go."""

    def __init__(self, model: str, args: dict[str, Any], env: dict[str, str], log_path: Path,
                 traces: list[str], timeout_s: float, python: str = sys.executable,
                 lora: dict[str, str] | None = None):
        self.model, self.args, self.env, self.log_path = model, args, env, log_path
        self.lora = lora  # {"name", "path"}: a LoRARequest on every request
        self.trace_names, self.timeout_s, self.python = traces, timeout_s, python
        self.startup_s = 0.0
        self.requests_s: float | None = None
        self.state: dict[str, Any] = {}
        self.ready_log_offset = 0  # one-shot: the whole log is this job's
        self._peak_mb: float | None = None
        self._out_path: Path | None = None
        # Wall clock, as the child reports when it was ready: startup counts from the spawn,
        # its Python and vLLM imports included, as a server's does.
        self._spawned_at: float | None = None

    def start(self) -> None:
        pass

    def alive(self) -> bool:
        return False  # one-shot: never reused

    def generate(self, prepared: list[PreparedRequest], top_k: int) -> list[RequestResult]:
        work = self.log_path.with_suffix(".offline")
        work.mkdir(parents=True, exist_ok=True)
        spec_path, out_path = work / "spec.json", work / "out.json"
        spec_path.write_text(json.dumps({
            "model": self.model, "args": self.args, "traces": self.trace_names, "top_k": top_k,
            "lora": self.lora,
            "requests": [{"id": r.id, "messages": r.messages, "max_tokens": r.max_tokens}
                         for r in prepared]}))
        self._out_path, self._spawned_at = out_path, time.time()
        try:
            began = time.monotonic()
            child = proc.start([self.python, "-m", "harness.worker.offline_child",
                                str(spec_path), str(out_path)], self.log_path, env=self.env)
            watch = proc.MemoryWatch(child.pid)
            try:
                finished = proc.wait(child, self.timeout_s, proc.DEFAULT_GRACE_S, began)
            finally:
                watch.close()
                self._peak_mb = watch.peak_mb
            self.state = _read_state(out_path)
        finally:
            for path in (spec_path, out_path):
                path.unlink(missing_ok=True)
            work.rmdir()
        self.startup_s = self._startup_from(self.state) or 0.0
        self.requests_s = self.state.get("generate_s")  # the one batched call
        phase = self.state.get("phase", "startup")
        if finished.timed_out:
            kind = "startup-timeout" if phase == "startup" else "timeout"
            raise EngineFailure(kind, f"offline engine overran {self.timeout_s:.0f} s in {phase}")
        if phase == "patch" and "error" in self.state:
            raise EngineFailure("harness-error", (
                f"a harness patch (trace or mutation) no longer applies to this vLLM: "
                f"{self.state['error']}; not a verdict on vLLM"))
        if finished.returncode != 0 or phase != "done":
            error = self.state.get("error", f"exit code {finished.returncode}")
            kind = classify_exit(finished.returncode, proc.read_tail(self.log_path))
            raise EngineFailure(kind, f"offline engine failed during {phase}: {error}")
        by_id = {r.id: r for r in prepared}
        return [RequestResult(
            id=item["id"], ok=bool(item["token_ids"]), text=item["text"],
            error="" if item["token_ids"] else "no tokens generated",
            token_ids=item["token_ids"],
            logprobs=[[TopLogprob(**alt) for alt in position] for position in item["logprobs"]],
            prompt_tokens=item["prompt_tokens"], finish_reason=item["finish_reason"],
            text_only_prompt_tokens=item.get("text_only_prompt_tokens"),
            images=by_id[item["id"]].images, image_sizes=by_id[item["id"]].image_sizes,
            latency_s=None) for item in self.state["requests"]]

    def _startup_from(self, state: dict[str, Any]) -> float | None:
        if "ready_at" in state and self._spawned_at is not None:
            return max(0.0, state["ready_at"] - self._spawned_at)
        return state.get("startup_s")

    def ready_after(self) -> float | None:
        """Seconds from spawn to ready once the child has said so (for live progress)."""
        if self._out_path is None:
            return None
        state = _read_state(self._out_path)
        return self._startup_from(state) if state.get("phase") in ("generate", "done") else None

    def traces(self) -> dict[str, Any]:
        return self.state.get("traces", {})

    def mutations(self) -> list[str]:
        return self.state.get("mutations", [])

    def reset_peak(self) -> None:
        self._peak_mb = None

    def peak_rss_mb(self) -> float | None:
        return self._peak_mb

    def stop(self) -> int | None:
        return None


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
