"""GPU memory from the vendors' tools: parse their machine-readable output. Pure parsers plus one
runner whose command runner is a parameter (tests feed recorded outputs).

- ``amd-smi metric --mem-usage --json``: a list of ``{"gpu": N, "mem_usage": {"total_vram":
  {"value": V, "unit": "MB"}, "used_vram": {...}}}``; newer releases wrap the list as
  ``{"gpu_data": [...]}`` and older ones give bare numbers (MB).
- ``rocm-smi --showmeminfo vram --json``: ``{"card0": {"VRAM Total Memory (B)": "...",
  "VRAM Total Used Memory (B)": "..."}}``.
- ``nvidia-smi --query-gpu=index,memory.total,memory.used --format=csv,noheader,nounits``:
  ``0, 81559, 4`` per GPU, MiB (nvidia-smi offers CSV and XML, no JSON).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any, Callable

TOOL_TIMEOUT_S = 30
MIB = 1024 * 1024
_UNIT_MIB = {"b": 1 / MIB, "kb": 1 / 1024, "kib": 1 / 1024, "mb": 1.0, "mib": 1.0,
             "gb": 1024.0, "gib": 1024.0}

COMMANDS = {
    "amd-smi": ["amd-smi", "metric", "--mem-usage", "--json"],
    "rocm-smi": ["rocm-smi", "--showmeminfo", "vram", "--json"],
    "nvidia-smi": ["nvidia-smi", "--query-gpu=index,memory.total,memory.used",
                   "--format=csv,noheader,nounits"],
}
TOOLS_FOR = {"rocm": ("amd-smi", "rocm-smi"), "cuda": ("nvidia-smi",)}


@dataclass(frozen=True)
class GpuMemory:
    index: int
    total_mib: float
    used_mib: float

    @property
    def used_fraction(self) -> float:
        return self.used_mib / self.total_mib if self.total_mib else 1.0


class ParseError(ValueError):
    pass


def _mib(value: Any) -> float:
    if isinstance(value, dict):
        unit = str(value.get("unit", "MB")).lower()
        if unit not in _UNIT_MIB:
            raise ParseError(f"unknown memory unit {value.get('unit')!r}")
        return float(value["value"]) * _UNIT_MIB[unit]
    return float(value)  # bare numbers: MB (amd-smi before units were reported)


def parse_amd_smi(text: str) -> list[GpuMemory]:
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("gpu_data", [data])
    out = []
    for item in data:
        usage = item.get("mem_usage") or {}
        try:
            out.append(GpuMemory(int(item["gpu"]), _mib(usage["total_vram"]),
                                 _mib(usage["used_vram"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"amd-smi: unexpected entry {str(item)[:200]} ({exc})") from None
    return out


def parse_rocm_smi(text: str) -> list[GpuMemory]:
    out = []
    for card, fields in json.loads(text).items():
        match = re.fullmatch(r"card(\d+)", card)
        if not match:
            continue  # e.g. "system"
        try:
            out.append(GpuMemory(int(match.group(1)),
                                 int(fields["VRAM Total Memory (B)"]) / MIB,
                                 int(fields["VRAM Total Used Memory (B)"]) / MIB))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"rocm-smi: unexpected {card}: {fields} ({exc})") from None
    return sorted(out, key=lambda g: g.index)


def parse_nvidia_smi(text: str) -> list[GpuMemory]:
    out = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            raise ParseError(f"nvidia-smi: expected 'index, total, used', got {line!r}")
        try:
            out.append(GpuMemory(int(parts[0]), float(parts[1]), float(parts[2])))
        except ValueError:
            raise ParseError(f"nvidia-smi: not numbers: {line!r}") from None
    return out


PARSERS: dict[str, Callable[[str], list[GpuMemory]]] = {
    "amd-smi": parse_amd_smi, "rocm-smi": parse_rocm_smi, "nvidia-smi": parse_nvidia_smi}

Runner = Callable[[list[str]], "tuple[int, str]"]


def run_command(argv: list[str]) -> tuple[int, str]:
    """(exit code, stdout); 127 when the tool is not installed."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, ""
    except subprocess.TimeoutExpired:
        return 124, ""
    return done.returncode, done.stdout if done.returncode == 0 else done.stderr


def query(accelerator: str, runner: Runner = run_command) -> tuple[str, list[GpuMemory]]:
    """(tool used, per-GPU memory) from the first of the accelerator's tools that answers."""
    problems = []
    for tool in TOOLS_FOR.get(accelerator, ()):
        code, out = runner(COMMANDS[tool])
        if code == 127:
            problems.append(f"{tool} not installed")
            continue
        if code != 0:
            problems.append(f"{tool} exited {code}: {out.strip()[:200]}")
            continue
        try:
            return tool, PARSERS[tool](out)
        except (ParseError, json.JSONDecodeError) as exc:
            problems.append(f"{tool}: {exc}")
    raise ParseError("; ".join(problems) or f"no GPU tool for {accelerator}")
