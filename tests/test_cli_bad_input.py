"""Hostile and careless input to every subcommand: exit 2, one line on stderr naming what is
wrong, no traceback, nothing on stdout, no output file written.

The commands run in-process (fast); an exception escaping `main` fails the test with its
traceback. `execute` is replaced by a guard so that an input wrongly accepted cannot start a
real engine from a unit test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import harness.host.execute
from harness.commands.cli import main
from tests.conftest import CASES, REAL_RUN, REPO

RUN = str(REAL_RUN / "real-cpu-1")


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    """A directory of bad inputs."""
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "nul.yaml").write_bytes(b"title: a\x00b\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "scalar.yaml").write_text("just a string\n")
    (tmp_path / "unterminated.yaml").write_text('title: "x\n')
    (tmp_path / "tabs.yaml").write_text("title:\n\t- x\n")
    (tmp_path / "python_tag.yaml").write_text("title: !!python/object/apply:os.system [id]\n")
    (tmp_path / "dupe.yaml").write_text("title: a\ntitle: b\n")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")
    laughs = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefg", "bcdefgh"):
        laughs.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    (tmp_path / "bomb.yaml").write_text("\n".join(laughs) + "\n")
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "notdb.sqlite").write_text("not sqlite\n")
    corrupt = tmp_path / "corrupt" / "cpu"
    corrupt.mkdir(parents=True)
    (corrupt / "x.json").write_text("{bad")
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "platforms.yaml").write_text((CASES / "platforms.yaml").read_text())
    (tmp_path / "cases" / "bomb.yaml").write_text((tmp_path / "bomb.yaml").read_text())
    return tmp_path


YAML_FILES = ["binary", "nul", "empty", "list", "scalar", "unterminated", "tabs", "python_tag",
              "dupe", "deep", "bomb", "dir", "loop", "missing"]

ARGVS = [
    *[f"validate {{bad}}/{name}.yaml" for name in YAML_FILES],
    "validate {bad}/emptydir",
    *[f"plan --platforms-file {{bad}}/{name}.yaml" for name in YAML_FILES],
    *[f"plan --cases {{bad}}/cases/bomb.yaml --platforms-file {CASES}/platforms.yaml"],
    "plan --cases {bad}/nowhere",
    "plan --platform nope", "plan --platform ,,,", "plan --platform=", "plan -k (((",
    "plan -k and", "plan -k not", "plan --json --cases {bad}/binary.yaml",
    "run", "run --platform nope", "run --platform=", "run --platform cpu -k ((( ",
    "run --platform cpu --run-id ../../etc", "run --platform cpu --run-id a/b",
    "run --platform cpu --run-id=", "run --platform cpu --run-id -x",
    "run --platform cpu --run-id " + "x" * 300,
    "run --platform cpu --shard-index -1 --shard-count 2",
    "run --platform cpu --shard-index 0 --shard-count 0",
    "run --platform cpu --shard-index 2 --shard-count 2",
    "run --platform cpu --shard-index x --shard-count 2", "run --platform cpu --shard-index 1",
    "run --platform cpu --results {bad}/afile", "run --platform cpu --results {bad}/afile/sub",
    "run --platform cpu --progress loud", "run --platform cpu --engine lxc",
    "run --platform rocm --gpus x --dry-run", "run --platform rocm --gpus 0,,1 --dry-run",
    "run --platform cpu --platforms-file {bad}/bomb.yaml",
    "compare", "compare {bad}/nowhere", "compare {bad}/afile", "compare {bad}/emptydir",
    "compare {bad}/corrupt", "compare " + RUN + " " + RUN + " " + RUN,
    "compare " + RUN + " --baseline cpu --candidate cpu",
    "compare " + RUN + " " + RUN + " --baseline cpu --candidate cpu --markdown {bad}/dir.yaml",
    "compare " + RUN + " " + RUN + " --baseline cpu --candidate cpu --junit {bad}/afile/x.xml",
    "compare " + RUN + " " + RUN + " --baseline cpu --candidate cpu --json=",
    "compare " + RUN + " " + RUN + " --baseline cpu --candidate cpu --json /proc/x.json",
    "ingest", "ingest " + RUN + " --db {bad}/notdb.sqlite", "ingest " + RUN + " --db {bad}/dir.yaml",
    "dashboard --nights 0", "dashboard --nights x", "dashboard --db {bad}/notdb.sqlite",
    "dashboard --db {bad}/nowhere.sqlite --out {bad}/d.html",
    "dashboard --out {bad}/dir.yaml", "dashboard --out {bad}/afile/d.html",
    "pipeline --parallelism 0", "pipeline --parallelism x", "pipeline --compare x",
    "pipeline --compare cuda:nope", "pipeline --part -1", "pipeline --max-jobs-per-upload 0",
    "pipeline --platform nope", "pipeline -k (((", "pipeline --cases {bad}/nowhere",
    "pipeline --platforms-file {bad}/binary.yaml",
    "reference --case {bad}/nowhere --run-id r", "reference --case cases --run-id ../x",
    "reference --case {bad}/binary.yaml --run-id r", "reference --run-id r",
    "prune --keep x", "prune --keep -1", "prune --engine lxc",
    "nocommand", "", "--version-of-nothing",
]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("template", ARGVS)
def test_bad_input_is_one_line_exit_2_and_no_output(template, bad, capsys, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a bad input was accepted: the run would have started")

    monkeypatch.setattr(harness.host.execute, "execute", must_not_run)
    monkeypatch.chdir(REPO)
    before = sorted(p.name for p in bad.rglob("*"))
    code, out, err = run_cli(template.format(bad=bad).split(), capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out[-500:], err[-500:])
    assert "Traceback" not in err and "Traceback" not in out
    assert len(lines) == 1, err
    assert "error" in lines[0]
    assert out == ""  # no partial output
    assert sorted(p.name for p in bad.rglob("*")) == before  # no file written


def test_errors_name_the_file(bad, capsys):
    for name, problem in (("binary", "not UTF-8"), ("bomb", "aliases are expanded"),
                          ("deep", "nest"), ("python_tag", "tag not allowed"),
                          ("dupe", "duplicate key"), ("loop", "no such file")):
        code, _, err = run_cli(["validate", str(bad / f"{name}.yaml")], capsys)
        assert code == 2 and f"{name}.yaml" in err and problem in err, err


def test_the_real_entry_point_too(bad):
    """Once through the installed entry (python -m harness): exit status and stderr as a
    shell sees them."""
    done = subprocess.run([sys.executable, "-m", "harness", "validate", str(bad / "bomb.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "bomb.yaml" in done.stderr
