"""`harness bisect` command line: bad input is a one-line error (exit 2) before any engine runs;
a rerun with a changed request is refused by name."""

from __future__ import annotations

import pytest

from harness.commands.cli import main
from tests.conftest import CASES


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "candidates.txt"
    path.write_text("".join(f"127.0.0.1:9/vllm/x:v{i}\n" for i in range(4)))
    return path


def bisect(tmp_path, *extra: str, case: str = "phi4mm_variable_crop", platform: str = "rocm",
           good: str = "v0", bad: str = "v3") -> list[str]:
    return ["bisect", "--case", case, "--platform", platform, "--good", good, "--bad", bad,
            "--cases", str(CASES), "--results", str(tmp_path / "results"), *extra]


@pytest.mark.parametrize("changes, message", [
    ({"case": "nope"}, "--case nope: no such case"),
    ({"platform": "nope"}, "--platform nope: not in"),
    ({"platform": "cpu"}, "--platform cpu: runs on the host"),
    ({"good": "v3", "bad": "v0"}, "--good v3 must come before --bad v0"),
    ({"good": "v9"}, "--good v9: not among the candidates"),
])
def test_bad_requests_are_one_line_errors(tmp_path, capsys, candidates, changes, message):
    assert main(bisect(tmp_path, "--candidates", str(candidates), **changes)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_bad_candidates_file_names_the_line(tmp_path, capsys):
    path = tmp_path / "c.txt"
    path.write_text("127.0.0.1:9/vllm/x:v0\nbad ref here\n")
    assert main(bisect(tmp_path, "--candidates", str(path))) == 2
    assert f"{path}:2: 'bad ref here' is not an image reference" in capsys.readouterr().err


def test_options_are_checked(tmp_path, capsys, candidates):
    assert main(bisect(tmp_path, "--candidates", str(candidates), "--confirmations", "-1")) == 2
    assert "--confirmations must be >= 0" in capsys.readouterr().err
    assert main(bisect(tmp_path, "--candidates", str(candidates), "--tag-pattern", "x")) == 2
    assert "--tag-pattern goes with --tags-from" in capsys.readouterr().err


def test_unreachable_registry_is_an_infrastructure_error(tmp_path, capsys):
    assert main(bisect(tmp_path, "--tags-from", "127.0.0.1:1/vllm/x")) == 3
    err = capsys.readouterr().err
    assert "error: registry: http://127.0.0.1:1/v2/vllm/x/tags/list" in err and "Traceback" not in err


def test_a_changed_rerun_is_refused_and_the_state_kept(tmp_path, capsys, candidates):
    from harness.host.bisect.state import BisectState, Candidate, save_state

    bisect_dir = tmp_path / "results" / "bisect-mine"
    saved = BisectState(id="mine", case="phi4mm_variable_crop", platform="rocm", good="v0",
                        bad="v3", confirmations=1, verify_ends=True,
                        source=f"file:{candidates}",
                        candidates=[Candidate(ref=f"127.0.0.1:9/vllm/x:v{i}") for i in range(4)])
    save_state(bisect_dir, saved)
    before = (bisect_dir / "state.json").read_text()
    code = main(bisect(tmp_path, "--candidates", str(candidates), "--id", "mine",
                       "--confirmations", "2"))
    assert code == 2
    err = capsys.readouterr().err
    assert "started with confirmations=1, now 2" in err and "--id" in err
    assert (bisect_dir / "state.json").read_text() == before
