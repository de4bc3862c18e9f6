"""Probes never create a GPU context beside an engine that is still profiling GPU memory: on
GPU platforms they start only after the engine has served the requests; on CPU they overlap
the engine's start (nothing to disturb there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.plan import plan
from harness.results import RequestResult
from harness.spec.case import load_cases, load_platforms
from harness.worker import job as job_module
from harness.worker.engine import EnginePool
from tests.conftest import CASES, REPO

QWEN = "qwen2_5_vl_vit_cudagraph"


class StandInEngine:
    """Stands in for a GPU engine (no GPU here): records when it starts and serves."""

    def __init__(self, log_path: Path, events: list[str]):
        self.log_path, self.events = log_path, events
        self.startup_s, self.requests_s, self.ready_log_offset = 1.0, 0.1, 0
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("engine log\n")

    def start(self):
        self.events.append("engine start")

    def generate(self, prepared, top_k):
        self.events.append("engine served")
        return [RequestResult(id=r.id, ok=True, token_ids=[1]) for r in prepared]

    def alive(self):
        return True

    def reset_peak(self):
        pass

    def peak_rss_mb(self):
        return None

    def traces(self):
        return {}

    def mutations(self):
        return []

    def stop(self):
        self.events.append("engine stop")


@pytest.mark.parametrize("platform, expected", [
    ("rocm", ["engine start", "engine served", "probes start"]),
    ("cuda", ["engine start", "engine served", "probes start"]),
    ("cpu", ["probes start", "engine start", "engine served"]),
])
def test_probes_start_after_a_gpu_engine_is_ready_and_beside_a_cpu_one(
        tmp_path, monkeypatch, platform, expected):
    platforms = load_platforms(CASES / "platforms.yaml")
    [job] = plan(load_cases([CASES]), {platform: platforms[platform]}, [platform], QWEN)
    events: list[str] = []
    monkeypatch.setattr(job_module, "resolve_model", lambda job, ctx, *log: job_module.ResolvedModel(
        "stand-in", {}, {}, tmp_path))
    monkeypatch.setattr(job_module, "new_engine",
                        lambda job, resolved, log_path, ctx: StandInEngine(log_path, events))
    # No GPU tools here (amd-smi, nvidia-smi): their lookups would only wait out timeouts.
    monkeypatch.setattr(job_module, "fingerprint", lambda name, accelerator, repo: {})
    monkeypatch.setattr(job_module, "start_probes",
                        lambda job, log, ctx: events.append("probes start"))
    ctx = job_module.RunContext(tmp_path, "r1", REPO, tmp_path / "models")
    job_module.run_job(job, ctx, EnginePool())
    assert [e for e in events if e != "engine stop"] == expected
