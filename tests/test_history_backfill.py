"""Backfilling the history store from earlier Buildkite builds' result artifacts.

The Buildkite agent is the project's fake (tests/bin/buildkite-agent, named as such): it serves
each earlier build's artifacts from its state directory by build id, as `buildkite-agent artifact
download --build ID` does against Buildkite. The stores are real (SQLite and PostgreSQL).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.commands.cli import main
from tests.conftest import REPO
from tests.test_history_data import planted_history

BUILDS = 5


@pytest.fixture
def earlier_builds(tmp_path: Path, monkeypatch):
    """Five nights, each published as the artifacts of its own earlier build."""
    runs, _ = planted_history(tmp_path / "source", nights=BUILDS, count=4)
    state = tmp_path / "buildkite"
    ids = []
    for i, run in enumerate(runs):
        build_id = f"0190c0de-0000-4000-8000-00000000000{i}"
        shutil.copytree(run, state / "builds" / build_id / "results" / run.name)
        ids.append(build_id)
    monkeypatch.setenv("BUILDKITE", "true")
    monkeypatch.setenv("FAKE_BUILDKITE_DIR", str(state))
    monkeypatch.setenv("BUILDKITE_BUILD_ID", "0190c0de-ffff-4000-8000-000000000099")
    monkeypatch.setenv("PATH", f"{REPO / 'tests' / 'bin'}:{__import__('os').environ['PATH']}")
    return runs, ids, state


def page(db: str, out: Path) -> str:
    assert main(["dashboard", "--db", db, "--out", str(out)]) == 0
    return re.sub(r"generated [0-9T:+-]+", "generated -", out.read_text(encoding="utf-8"))


def test_backfilling_five_builds_gives_the_page_of_ingesting_them_one_by_one(
        tmp_path, earlier_builds, new_store, capsys):
    runs, ids, state = earlier_builds
    # night by night, as each nightly step would have done
    nightly = tmp_path / "nightly" / "results"
    nightly_db = new_store()
    for run in runs:
        shutil.copytree(run, nightly / run.name)
        assert main(["ingest", "--db", nightly_db, str(nightly / run.name)]) == 0
    capsys.readouterr()
    # a new store, filled from the five builds at once (in another order)
    filled = tmp_path / "backfill" / "results"
    backfill_db = new_store()
    assert main(["ingest", "--db", backfill_db, "--results-dir", str(filled),
                 *[arg for build in reversed(ids) for arg in ("--buildkite-build", build)]]) == 0
    out = capsys.readouterr().out
    assert all(f"buildkite build {build}: {filled / run.name}" in out
               for build, run in zip(ids, runs))
    assert out.count("12 result(s) added") == BUILDS
    assert sorted(p.name for p in filled.iterdir()) == [run.name for run in runs]
    assert page(backfill_db, filled / "dashboard.html") == page(nightly_db,
                                                                nightly / "dashboard.html")
    # it went through `artifact download --build`, once per build
    calls = (state / "calls.jsonl").read_text()
    assert all(f'"--build", "{build}"' in calls for build in ids)


def test_backfilling_again_adds_nothing(tmp_path, earlier_builds, new_store, capsys):
    _, ids, _ = earlier_builds
    db, results = new_store(), tmp_path / "results"
    argv = ["ingest", "--db", db, "--results-dir", str(results), "--buildkite-build", ids[0]]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 result(s) added, 12 already stored" in capsys.readouterr().out


def test_a_build_without_artifacts_is_reported_and_the_others_still_stored(
        tmp_path, earlier_builds, new_store, capsys):
    _, ids, _ = earlier_builds
    db, results = new_store(), tmp_path / "results"
    assert main(["ingest", "--db", db, "--results-dir", str(results),
                 "--buildkite-build", "no-such-build", "--buildkite-build", ids[1]]) == 0
    captured = capsys.readouterr()
    assert "warning: build no-such-build: nothing downloaded" in captured.err
    assert "12 result(s) added" in captured.out
    assert main(["ingest", "--db", db, "--results-dir", str(results),
                 "--buildkite-build", "no-such-build"]) == 3
    assert "no earlier build could be downloaded" in capsys.readouterr().err


def test_backfill_outside_buildkite_says_it_needs_the_agent(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BUILDKITE", raising=False)
    assert main(["ingest", "--db", str(tmp_path / "h.sqlite"), "--buildkite-build", "x"]) == 3
    assert "--buildkite-build needs a Buildkite agent" in capsys.readouterr().err
