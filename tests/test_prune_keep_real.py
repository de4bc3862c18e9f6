"""`harness run --keep-container` and `harness prune` on real containers and images, on both
real engines: podman (runc) and the Docker daemon of tests/engines.py.

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
from tests.test_container_real import Engine, engine, platforms_file  # noqa: F401 (fixture)

pytestmark = pytest.mark.container
UNIQUE = f"{os.getpid()}"
PLATFORM = f"prunetest{UNIQUE}"


def harness(engine: Engine, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:  # noqa: F811
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=engine.environ())


def exists(engine: Engine, kind: str, name: str) -> bool:  # noqa: F811
    return engine(kind, "inspect", name).returncode == 0


def remove_all(engine: Engine, kind: str, names: list[str]) -> None:  # noqa: F811
    """Remove each of these containers or images that still exists, one at a time (one
    `rm -f a b c` stops at a name prune already removed, leaving the rest), checking every
    removal; afterwards none may exist."""
    command = "rm" if kind == "container" else "rmi"
    failed = []
    for name in names:
        if exists(engine, kind, name):
            done = engine(command, "-f", name)
            if done.returncode != 0:
                failed.append(f"{command} -f {name}: exit {done.returncode}: {done.stderr.strip()}")
    assert failed == [] and not [n for n in names if exists(engine, kind, n)], failed


def build_options(engine: Engine) -> list[str]:  # noqa: F811
    # docker's daemon here has no bridge network; podman here needs runc (see engines.md).
    return ["--runtime", "runc"] if engine.name == "podman" else ["--network=host"]


def failing_platform(tmp_path: Path, engine: Engine) -> Path:  # noqa: F811
    """The engine's CPU platform renamed to a platform of this test only, with a stand-in
    worker "python" that fails at once (a failed job without minutes of vLLM)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    bin_dir.chmod(0o755)
    (bin_dir / "python").write_text("#!/bin/sh\necho 'stand-in worker: failing on purpose'\n"
                                    "exit 1\n")
    (bin_dir / "python").chmod(0o755)
    path = platforms_file(tmp_path, engine, python="/opt/stand-in/python",
                          readonly_mounts=[f"{bin_dir}:/opt/stand-in"])
    data = yaml.safe_load(path.read_text())
    data["platforms"][PLATFORM] = data["platforms"].pop(engine.platform)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_failing(engine: Engine, tmp_path: Path, run_id: str, *extra: str):  # noqa: F811
    platforms = failing_platform(tmp_path, engine)
    return harness(engine, "run", "--platform", PLATFORM, "--cases", str(CASES),
                   "--platforms-file", str(platforms), "--results", str(tmp_path / "results"),
                   "--run-id", run_id, "-k", "phi4mm", *extra)


def test_keep_container_keeps_a_failed_runs_container_stopped_and_says_how_to_enter(
        tmp_path, engine):  # noqa: F811
    run_id = f"keep-{engine.name}-{UNIQUE}"
    done = run_failing(engine, tmp_path, run_id, "--keep-container")
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    kept = [line for line in done.stderr.splitlines() if line.startswith("kept container ")]
    assert kept, done.stderr
    container = kept[0].split()[2]
    try:
        assert container.startswith(f"harness-{PLATFORM}-{run_id}-")
        assert exists(engine, "container", container)
        state = engine("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
        assert state == "false"  # stopped: nothing runs on, only the filesystem is kept
        assert f" start -ai {container}" in done.stderr and f" rm {container}" in done.stderr
        result = read_result(tmp_path / "results" / run_id / PLATFORM /
                             "phi4mm_variable_crop.json")
        assert result.status in ("error", "failed") and "failing on purpose" in result.log.tail
    finally:
        remove_all(engine, "container", [container])


def test_without_keep_container_the_failed_container_is_removed(tmp_path, engine):  # noqa: F811
    run_id = f"nokeep-{engine.name}-{UNIQUE}"
    done = run_failing(engine, tmp_path, run_id)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "kept container" not in done.stderr
    left = engine("ps", "-a", "-q", "--filter", f"label=vllm-harness.run={run_id}").stdout
    assert left.strip() == ""


@pytest.fixture
def labelled_objects(tmp_path, engine):  # noqa: F811
    """Three stopped harness containers, one running, one with our platform label but no run
    label (not the harness's); three harness images and one unlabelled image."""
    names = {"old": [], "running": f"prune-running-{UNIQUE}",
             "foreign": f"prune-foreign-{UNIQUE}", "images": [],
             "foreign_image": f"localhost/prune-foreign:{UNIQUE}"}
    platform = ["--label", f"vllm-harness.platform={PLATFORM}"]
    try:
        for i in range(3):
            name = f"prune-old{i}-{UNIQUE}"
            made = engine("create", "--name", name, "--label", f"vllm-harness.run=r{i}",
                          *platform, engine.image, "true")
            assert made.returncode == 0, made.stderr
            names["old"].append(name)
        limits = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=8192:8192"] \
            if engine.name == "podman" else []
        runtime = ["--runtime", "runc"] if engine.name == "podman" else []
        made = engine(*runtime, "run", "-d", "--name", names["running"], "--network", "host",
                      *limits, "--label", "vllm-harness.run=r9", *platform, engine.image,
                      "sleep", "600")
        assert made.returncode == 0, made.stderr
        made = engine("create", "--name", names["foreign"], *platform, engine.image, "true")
        assert made.returncode == 0, made.stderr
        context = tmp_path / "ctx"
        context.mkdir()
        for i in range(3):
            tag = f"localhost/prune-img{i}:{UNIQUE}"
            (context / "Containerfile").write_text(
                f"FROM {engine.image}\nLABEL vllm-harness.image={PLATFORM} n={i}-{UNIQUE}\n")
            built = engine("build", *build_options(engine), "-q", "-f",
                           str(context / "Containerfile"), "-t", tag, str(context))
            assert built.returncode == 0, built.stderr
            names["images"].append(tag)
        (context / "Containerfile").write_text(
            f"FROM {engine.image}\nLABEL n=foreign-{UNIQUE}\n")
        built = engine("build", *build_options(engine), "-q", "-f",
                       str(context / "Containerfile"), "-t", names["foreign_image"], str(context))
        assert built.returncode == 0, built.stderr
        yield names
    finally:
        remove_all(engine, "container", [*names["old"], names["running"], names["foreign"]])
        remove_all(engine, "image", [*names["images"], names["foreign_image"]])
        listed = engine("ps", "-a", "-q", "--filter", f"label=vllm-harness.platform={PLATFORM}")
        assert listed.returncode == 0 and listed.stdout.split() == [], listed.stdout + listed.stderr


def test_prune_keeps_the_newest_and_never_touches_what_is_not_the_harnesss(
        labelled_objects, engine):  # noqa: F811
    names = labelled_objects
    preview = harness(engine, "prune", "--engine", engine.name, "--dry-run")  # lists only
    assert preview.returncode == 0, preview.stderr
    assert names["foreign"] not in preview.stdout
    assert names["foreign_image"] not in preview.stdout
    assert all(exists(engine, "container", n) for n in names["old"])  # dry run: nothing goes

    done = harness(engine, "prune", "--engine", engine.name, "--platform", PLATFORM,
                   "--keep", "1")
    assert done.returncode == 0, done.stderr
    assert [exists(engine, "container", n) for n in names["old"]] == [False, False, True]
    assert exists(engine, "container", names["running"])  # running: never removed
    assert exists(engine, "container", names["foreign"])  # no harness run label: not ours
    assert [exists(engine, "image", n) for n in names["images"]] == [False, False, True]
    assert exists(engine, "image", names["foreign_image"])
    assert "removed 2 container(s) and 2 image(s)" in done.stdout


def test_prune_with_a_missing_engine_is_one_line_and_infra(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "HARNESS_DOCKER": ""}
    done = subprocess.run([sys.executable, "-m", "harness", "prune", "--engine", "docker"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 3
    assert done.stderr.strip() == "error: docker: not installed (not on PATH)"
