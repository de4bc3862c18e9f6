"""The rehearsal's machine: the shipped cases and platforms with its ONE override applied
(tests/data/rehearsal/platforms-override.yaml), and a Hugging Face cache holding the cases'
hub snapshots (the tiny models under the real hub ids and revisions: tests/hub_fixtures.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from harness.plan import merge
from tests.conftest import CASES

OVERRIDE = Path(__file__).parent / "data" / "rehearsal" / "platforms-override.yaml"


def override(registry: str) -> dict:
    return yaml.safe_load(OVERRIDE.read_text().replace("${REGISTRY}", registry))


def write_cases(destination: Path, registry: str) -> Path:
    """cases/ (cases and platforms.yaml) with the override applied, into ``destination``;
    world-readable (containers may run as another user). Returns ``destination``."""
    changes = override(registry)
    destination.mkdir(parents=True, exist_ok=True)
    platforms = yaml.safe_load((CASES / "platforms.yaml").read_text())
    for name, entry in changes["platforms"].items():
        platforms["platforms"][name] = merge(platforms["platforms"][name], entry)
    (destination / "platforms.yaml").write_text(yaml.safe_dump(platforms, sort_keys=False))
    for source in sorted(CASES.glob("*.yaml")):
        if source.name == "platforms.yaml":
            continue
        case = yaml.safe_load(source.read_text())
        for name in changes["drop_case_engine_args_for"]:
            case.get("platforms", {}).get(name, {}).pop("engine_args", None)
        case["platforms"] = {k: v for k, v in case.get("platforms", {}).items() if v}
        if not case["platforms"]:
            del case["platforms"]
        (destination / source.name).write_text(yaml.safe_dump(case, sort_keys=False))
    for path in [destination, *destination.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return destination


def copy_tree_readable(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, symlinks=True)
    return destination
