"""What the GPU tools say about the machine, parsed: amd-smi and nvidia-smi summaries, the ROCm
version, the vLLM commit. Parsers are pure (text in, dicts out) and tested on recorded outputs;
``gpu_summary`` is the only part that runs the tools, each through ``proc.call`` with a deadline.

Shared with ``harness doctor`` (GPU cleanliness): add parsers for other tools' outputs here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness import proc

TOOL_TIMEOUT_S = 20
NVIDIA_QUERY = ("index", "name", "driver_version", "memory.total", "compute_cap")
ROCM_INFO = Path("/opt/rocm/.info/version")
# Environment that changes which kernels vLLM runs on ROCm: recorded by value (never secret).
GPU_ENV_RE = re.compile(r"^(VLLM_ROCM_\w+|VLLM_USE_AITER\w*|AITER_\w+|HIP_VISIBLE_DEVICES|"
                        r"ROCR_VISIBLE_DEVICES|CUDA_VISIBLE_DEVICES|HSA_\w+|PYTORCH_ROCM_ARCH|"
                        r"NCCL_\w+|RCCL_\w+|VLLM_ATTENTION_BACKEND)$")


def _gpus(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):  # newer amd-smi: {"gpu_data": [...]}
        data = data.get("gpu_data", [])
    return [g for g in data if isinstance(g, dict)] if isinstance(data, list) else []


def _mb(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("value")
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def parse_amd_smi_static(text: str) -> list[dict[str, Any]]:
    """``amd-smi static --json`` -> per GPU: index, name, gfx arch, driver, VRAM (MB)."""
    out = []
    for gpu in _gpus(json.loads(text)):
        asic, driver = gpu.get("asic") or {}, gpu.get("driver") or {}
        out.append({"index": gpu.get("gpu"), "name": asic.get("market_name"),
                    "gfx_arch": asic.get("target_graphics_version"),
                    "compute_units": asic.get("num_compute_units"),
                    "driver": driver.get("version"),
                    "memory_mb": _mb(((gpu.get("vram") or {}).get("size")))})
    return out


def parse_amd_smi_version(text: str) -> dict[str, str | None]:
    """``amd-smi version --json`` -> tool version and ROCm version."""
    data = json.loads(text)
    item = data[0] if isinstance(data, list) and data else data if isinstance(data, dict) else {}
    return {"amd_smi": item.get("version"), "rocm_version": item.get("rocm_version")}


def parse_nvidia_smi_csv(text: str) -> list[dict[str, Any]]:
    """``nvidia-smi --query-gpu=<NVIDIA_QUERY> --format=csv,noheader`` -> per GPU."""
    out = []
    for line in text.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(NVIDIA_QUERY):
            continue
        index, name, driver, memory, capability = fields
        out.append({"index": int(index) if index.isdigit() else index, "name": name,
                    "driver": driver, "memory_mb": _mb(memory.split()[0]),
                    "compute_cap": capability})
    return out


def summarize(gpus: list[dict[str, Any]]) -> str:
    """'8x AMD Instinct MI300X (gfx942), driver 6.8.5' - one line for tables."""
    if not gpus:
        return ""
    names = sorted({g.get("name") or "?" for g in gpus})
    archs = sorted({g.get("gfx_arch") or g.get("compute_cap") or "" for g in gpus} - {""})
    drivers = sorted({g.get("driver") or "" for g in gpus} - {""})
    text = f"{len(gpus)}x {' / '.join(names)}"
    if archs:
        text += f" ({', '.join(archs)})"
    return text + (f", driver {', '.join(drivers)}" if drivers else "")


def vllm_commit(version: str | None) -> str | None:
    """The commit in a vLLM version: '0.11.1rc2.dev123+g1a2b3c4d' -> '1a2b3c4d'."""
    match = re.search(r"\+g([0-9a-f]{7,40})", version or "")
    return match.group(1) if match else None


def rocm_version(info_file: Path = ROCM_INFO) -> str | None:
    try:
        return info_file.read_text().strip().split("-")[0] or None
    except OSError:
        return None


def gpu_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    from harness.spec.platform import is_secret_name

    return {k: v for k, v in sorted(environ.items())
            if GPU_ENV_RE.match(k) and not is_secret_name(k)}


Runner = Callable[[list[str]], "proc.Captured | None"]


def _run(argv: list[str]) -> proc.Captured | None:
    if shutil.which(argv[0]) is None:
        return None
    return proc.call(argv, timeout_s=TOOL_TIMEOUT_S)


def gpu_summary(accelerator: str, run: Runner = _run) -> dict[str, Any]:
    """Run the platform's tool (if present) and parse it; {} where there is none."""
    try:
        if accelerator == "rocm":
            static = run(["amd-smi", "static", "--json"])
            version = run(["amd-smi", "version", "--json"])
            out: dict[str, Any] = {}
            if static is not None and static.returncode == 0:
                out["gpus"] = parse_amd_smi_static(static.stdout)
            if version is not None and version.returncode == 0:
                out.update(parse_amd_smi_version(version.stdout))
            return out
        if accelerator == "cuda":
            done = run(["nvidia-smi", f"--query-gpu={','.join(NVIDIA_QUERY)}",
                        "--format=csv,noheader"])
            if done is not None and done.returncode == 0:
                return {"gpus": parse_nvidia_smi_csv(done.stdout)}
    except (ValueError, KeyError, TypeError) as exc:  # a format we do not know: say so
        return {"error": f"could not parse the GPU tool's output: {type(exc).__name__}: {exc}"}
    return {}


# ---------------------------------------------------------------- memory (harness doctor)
# Is a GPU clean? Machine-readable memory per GPU:
# - ``amd-smi metric --mem-usage --json``: per GPU ``{"gpu": N, "mem_usage": {"total_vram":
#   {"value": V, "unit": "MB"}, "used_vram": {...}}}`` (bare numbers, MB, in older releases);
# - ``rocm-smi --showmeminfo vram --json``: ``{"card0": {"VRAM Total Memory (B)": "...",
#   "VRAM Total Used Memory (B)": "..."}}``;
# - ``nvidia-smi --query-gpu=index,memory.total,memory.used --format=csv,noheader,nounits``:
#   ``0, 81559, 4`` per GPU, MiB (nvidia-smi offers CSV and XML, no JSON).

MIB = 1024 * 1024
_UNIT_MIB = {"b": 1 / MIB, "kb": 1 / 1024, "kib": 1 / 1024, "mb": 1.0, "mib": 1.0,
             "gb": 1024.0, "gib": 1024.0}

MEMORY_COMMANDS = {
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


def parse_amd_smi_memory(text: str) -> list[GpuMemory]:
    out = []
    for item in _gpus(json.loads(text)):
        usage = item.get("mem_usage") or {}
        try:
            out.append(GpuMemory(int(item["gpu"]), _mib(usage["total_vram"]),
                                 _mib(usage["used_vram"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"amd-smi: unexpected entry {str(item)[:200]} ({exc})") from None
    return out


def parse_rocm_smi_memory(text: str) -> list[GpuMemory]:
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


def parse_nvidia_smi_memory(text: str) -> list[GpuMemory]:
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


MEMORY_PARSERS: dict[str, Callable[[str], list[GpuMemory]]] = {
    "amd-smi": parse_amd_smi_memory, "rocm-smi": parse_rocm_smi_memory,
    "nvidia-smi": parse_nvidia_smi_memory}

CommandRunner = Callable[[list[str]], "tuple[int, str]"]


def run_command(argv: list[str]) -> tuple[int, str]:
    """(exit code, stdout, or stderr on failure); 127 when the tool cannot start, 124 on the
    deadline. Through proc.call: own process group, deadline, nothing left running."""
    done = proc.call(argv, timeout_s=TOOL_TIMEOUT_S)
    if done is None:
        return 127, ""
    if done.returncode is None:
        return 124, ""
    return done.returncode, done.stdout if done.returncode == 0 else done.stderr


def memory_usage(accelerator: str, runner: CommandRunner = run_command) -> tuple[str, list[GpuMemory]]:
    """(tool used, per-GPU memory) from the first of the accelerator's tools that answers."""
    problems = []
    for tool in TOOLS_FOR.get(accelerator, ()):
        code, out = runner(MEMORY_COMMANDS[tool])
        if code == 127:
            problems.append(f"{tool} not installed")
            continue
        if code != 0:
            problems.append(f"{tool} exited {code}: {out.strip()[:200]}")
            continue
        try:
            return tool, MEMORY_PARSERS[tool](out)
        except (ParseError, json.JSONDecodeError) as exc:
            problems.append(f"{tool}: {exc}")
    raise ParseError("; ".join(problems) or f"no GPU tool for {accelerator}")
