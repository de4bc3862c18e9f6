"""A Hugging Face cache in the hub layout holding the tiny models under the cases' hub ids.

A stand-in for the hub download (the hub network is the boundary here): the files are the tiny
recipes', the repository names and revisions are the cases' own, so `model_source: hub`
resolves them through huggingface_hub and vLLM exactly as it would a real snapshot.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.models import build_model, default_cache_root
from harness.models.hubcache import add_snapshot
from harness.spec.case import load_cases
from tests.conftest import CASES


def fake_hub_cache(hf_home: Path) -> dict[str, tuple[str, str]]:
    """Fill ``hf_home/hub``; returns case id -> (hub id, revision)."""
    pinned = {}
    for case in load_cases([CASES]):
        assert case.model.revision, f"{case.id} pins no hub revision"
        tiny = build_model(case.model.tiny, default_cache_root())
        add_snapshot(hf_home / "hub", case.model.hub, case.model.revision, tiny)
        pinned[case.id] = (case.model.hub, case.model.revision)
    return pinned


def hub_platforms_file(tmp_path: Path, hf_home: Path, base: str = "cpu", **changes) -> Path:
    """cases/platforms.yaml with the CPU platform switched to `model_source: hub`, offline,
    reading the given cache (a test platform override: the local CPU stands in for a GPU)."""
    data = yaml.safe_load((CASES / "platforms.yaml").read_text())
    entry = data["platforms"][base]
    entry["model_source"] = "hub"
    entry["env"] = {**entry.get("env", {}), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1"}
    entry.update(changes)
    path = tmp_path / "platforms.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
