"""`harness run --keep-container` and `harness prune` on real podman containers and images.

Every object here carries a platform label unique to this test process, and prune is scoped to
it with --platform: other checkouts' tests on this host never see their containers pruned.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.results import read_result
from tests.conftest import CASES, REPO
from tests.engines import PODMAN, podman
from tests.test_container_real import Engine, platforms_file

pytestmark = pytest.mark.container
UNIQUE = f"{os.getpid()}"
PLATFORM = f"prunetest{UNIQUE}"


def harness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def exists(kind: str, name: str) -> bool:
    return podman(kind, "exists", name).returncode == 0


def failing_platform(tmp_path: Path, image: str) -> tuple[Path, str]:
    """cpu-podman renamed to a platform of this test only, with a stand-in worker "python"
    that fails at once (a failed job without minutes of vLLM)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text("#!/bin/sh\necho 'stand-in worker: failing on purpose'\n"
                                    "exit 1\n")
    (bin_dir / "python").chmod(0o755)
    path = platforms_file(tmp_path, Engine("podman", "cpu-podman", image, client=PODMAN),
                          python="/opt/stand-in/python",
                          readonly_mounts=[f"{bin_dir}:/opt/stand-in"])
    data = yaml.safe_load(path.read_text())
    data["platforms"][PLATFORM] = data["platforms"].pop("cpu-podman")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, PLATFORM


def test_keep_container_keeps_a_failed_runs_container_stopped_and_says_how_to_enter(
        tmp_path, podman_base):
    platforms, name = failing_platform(tmp_path, podman_base)
    run_id = f"keep-{UNIQUE}"
    done = harness("run", "--platform", name, "--cases", str(CASES), "--platforms-file",
                   str(platforms), "--results", str(tmp_path / "results"), "--run-id", run_id,
                   "-k", "phi4mm", "--keep-container")
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    kept = [line for line in done.stderr.splitlines() if line.startswith("kept container ")]
    assert kept, done.stderr
    container = kept[0].split()[2]
    try:
        assert container.startswith(f"harness-{name}-{run_id}-")
        assert exists("container", container)
        state = podman("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
        assert state == "false"  # stopped: nothing runs on, only the filesystem is kept
        assert f"podman --runtime runc start -ai {container}" in done.stderr
        assert f"podman --runtime runc rm {container}" in done.stderr
        result = read_result(tmp_path / "results" / run_id / name / "phi4mm_variable_crop.json")
        assert result.status == "error" and "failing on purpose" in result.log.tail
    finally:
        podman("rm", "-f", container)


def test_without_keep_container_the_failed_container_is_removed(tmp_path, podman_base):
    platforms, name = failing_platform(tmp_path, podman_base)
    run_id = f"nokeep-{UNIQUE}"
    done = harness("run", "--platform", name, "--cases", str(CASES), "--platforms-file",
                   str(platforms), "--results", str(tmp_path / "results"), "--run-id", run_id,
                   "-k", "phi4mm")
    assert done.returncode == 3
    assert "kept container" not in done.stderr
    left = podman("ps", "-a", "-q", "--filter", f"label=vllm-harness.run={run_id}").stdout
    assert left.strip() == ""


@pytest.fixture
def labelled_objects(tmp_path, podman_base):
    base_image = podman_base
    """Three stopped harness containers, one running, one with our platform label but no run
    label (not the harness's); three harness images and one unlabelled image."""
    names = {"old": [], "running": f"prune-running-{UNIQUE}", "foreign": f"prune-foreign-{UNIQUE}",
             "images": [], "foreign_image": f"localhost/prune-foreign:{UNIQUE}"}
    platform = ["--label", f"vllm-harness.platform={PLATFORM}"]
    try:
        for i in range(3):
            name = f"prune-old{i}-{UNIQUE}"
            made = podman("create", "--name", name, "--label", f"vllm-harness.run=r{i}",
                          *platform, base_image, "true")
            assert made.returncode == 0, made.stderr
            names["old"].append(name)
        made = podman("--runtime", "runc", "run", "-d", "--name", names["running"], "--network",
                      "host", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=8192:8192",
                      "--label", "vllm-harness.run=r9", *platform, base_image, "sleep", "600")
        assert made.returncode == 0, made.stderr
        made = podman("create", "--name", names["foreign"], *platform, base_image, "true")
        assert made.returncode == 0, made.stderr
        context = tmp_path / "ctx"
        context.mkdir()
        for i in range(3):
            tag = f"localhost/prune-img{i}:{UNIQUE}"
            (context / "Containerfile").write_text(
                f"FROM {base_image}\nLABEL vllm-harness.image={PLATFORM} n={i}-{UNIQUE}\n")
            built = podman("build", "--runtime", "runc", "-q", "-t", tag, str(context))
            assert built.returncode == 0, built.stderr
            names["images"].append(tag)
        (context / "Containerfile").write_text(f"FROM {base_image}\nLABEL n=foreign-{UNIQUE}\n")
        built = podman("build", "--runtime", "runc", "-q", "-t", names["foreign_image"],
                       str(context))
        assert built.returncode == 0, built.stderr
        yield names
    finally:
        podman("rm", "-f", "-t", "0", *names["old"], names["running"], names["foreign"])
        podman("rmi", "-f", *names["images"], names["foreign_image"])


def test_prune_keeps_the_newest_and_never_touches_what_is_not_the_harnesss(labelled_objects):
    names = labelled_objects
    preview = harness("prune", "--engine", "podman", "--dry-run")  # every platform: lists only
    assert preview.returncode == 0, preview.stderr
    assert names["foreign"] not in preview.stdout
    assert names["foreign_image"] not in preview.stdout
    assert all(exists("container", n) for n in names["old"])  # a dry run removes nothing

    done = harness("prune", "--engine", "podman", "--platform", PLATFORM, "--keep", "1")
    assert done.returncode == 0, done.stderr
    assert [exists("container", n) for n in names["old"]] == [False, False, True]
    assert exists("container", names["running"])  # running: never removed
    assert exists("container", names["foreign"])  # no harness run label: not ours
    assert [exists("image", n) for n in names["images"]] == [False, False, True]
    assert exists("image", names["foreign_image"])
    assert "removed 2 container(s) and 2 image(s)" in done.stdout


def test_prune_with_a_missing_engine_is_one_line_and_infra(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "harness", "prune", "--engine", "docker"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 3
    assert done.stderr.strip() == "error: docker: not installed (not on PATH)"
