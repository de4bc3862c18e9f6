"""Case ids come from file names: a name outside ``[a-z0-9][a-z0-9_-]*`` is refused in one
line, exit 2, before it can become a job key, result path, step key or page id."""

from __future__ import annotations

import shutil

import pytest

from harness.commands.cli import main
from tests.conftest import CASES


@pytest.mark.parametrize("name", ["My Case", "Qwen_VL", "café", "-dash-first", "_under",
                                  "dot.ted", "x\u0131"])
def test_a_case_file_named_outside_the_id_pattern_is_refused(tmp_path, name, capsys):
    shutil.copy(CASES / "platforms.yaml", tmp_path / "platforms.yaml")
    target = tmp_path / f"{name}.yaml"
    shutil.copy(CASES / "phi4mm_variable_crop.yaml", target)
    text = target.read_text()
    target.write_text(text.replace("\nid: phi4mm_variable_crop\n", "\n"))
    assert main(["validate", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert str(target) in err and "is not a case id" in err


def test_a_well_named_copy_is_accepted(tmp_path, capsys):
    shutil.copy(CASES / "platforms.yaml", tmp_path / "platforms.yaml")
    target = tmp_path / "phi4mm_copy-2.yaml"
    text = (CASES / "phi4mm_variable_crop.yaml").read_text()
    target.write_text(text.replace("\nid: phi4mm_variable_crop\n", "\n"))
    assert main(["validate", str(tmp_path)]) == 0, capsys.readouterr().err
