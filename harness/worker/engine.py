"""What an engine is to a job, how engine args are rendered, and engine reuse across jobs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.results import RequestResult


class EngineFailure(Exception):
    """The engine could not serve: carries the failure class for the result."""

    def __init__(self, failure_class: str, message: str):
        self.failure_class = failure_class
        super().__init__(message)


@dataclass
class PreparedRequest:
    id: str
    messages: list[dict[str, Any]]  # OpenAI chat format, images as data URLs
    max_tokens: int
    images: list[str] = field(default_factory=list)
    image_sizes: list[list[int]] = field(default_factory=list)


class Engine(Protocol):
    log_path: Path
    startup_s: float
    requests_s: float | None  # time spent generating in the last generate() call
    ready_log_offset: int  # log size when the engine became ready (start-up evidence ends)

    def start(self) -> None: ...

    def generate(self, requests: list[PreparedRequest], top_k: int) -> list[RequestResult]: ...

    def traces(self) -> dict[str, Any]: ...

    def mutations(self) -> list[str]: ...  # fault injections active in the engine (tests only)

    def reset_peak(self) -> None: ...  # a new job on this engine: peak memory starts again

    def peak_rss_mb(self) -> float | None: ...  # the engine process tree's peak since reset

    def stop(self) -> int | None: ...

    def alive(self) -> bool: ...


def cli_args(args: dict[str, Any]) -> list[str]:
    """Render engine args as vLLM CLI flags: ``max_model_len: 2048`` -> ``--max-model-len 2048``.

    Mappings become JSON (``--compilation-config '{"cudagraph_mm_encoder": true}'``), ``True``
    a bare flag, ``False`` the ``--no-`` form vLLM's BooleanOptionalAction accepts.
    """
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        elif value is None:
            continue
        elif isinstance(value, (dict, list)):
            out += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            out += [flag, str(value)]
    return out


class EnginePool:
    """Keeps the last engine running so the next job with the same engine key reuses it.

    Jobs are ordered by engine key (see the plugin), so one live engine at a time is enough and
    memory stays bounded on small machines.
    """

    def __init__(self) -> None:
        self._key: str | None = None
        self._engine: Engine | None = None

    def get(self, key: str) -> Engine | None:
        if self._key == key and self._engine is not None and self._engine.alive():
            return self._engine
        return None

    def put(self, key: str, engine: Engine) -> None:
        if self._engine is not None and self._engine is not engine:
            self.close()
        self._key, self._engine = key, engine

    def close(self) -> None:
        if self._engine is not None:
            try:
                self._engine.stop()
            finally:
                self._key, self._engine = None, None
