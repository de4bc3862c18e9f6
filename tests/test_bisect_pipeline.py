"""`harness pipeline --bisect ...`: one Buildkite step running the bisect on the platform's
queue, validated against Buildkite's schema as tests/test_pipeline.py does."""

from __future__ import annotations

import json
import shlex

import jsonschema
import pytest
import yaml

from harness.host.buildkite.uploads import check_interpolation
from harness.commands.cli import build_parser, main
from tests.conftest import BUILDKITE_SCHEMA, REPO

GOOD, BAD = "vllm/vllm-openai-rocm:nightly-1a2b3c4", "vllm/vllm-openai-rocm:nightly-5e6f7a8"


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_bisect_step_validates_and_runs_on_the_platform_queue(capsys):
    code = main(["pipeline", "--bisect", "--case", "phi4mm_variable_crop", "--platform", "rocm",
                 "--good", GOOD, "--bad", BAD, "--tags-from", "vllm/vllm-openai-rocm",
                 "--tag-pattern", "nightly-$(x)"])
    out, err = capsys.readouterr()
    assert code == 0, err
    document = yaml.safe_load(out)
    schema = jsonschema.Draft7Validator(json.loads(BUILDKITE_SCHEMA.read_text()))
    assert not list(schema.iter_errors(document))
    check_interpolation(document)  # "$" escaped for Buildkite's upload-time interpolation
    [step] = document["steps"]
    assert step["agents"] == {"queue": "amd_mi300_1"} and step["key"] == "bisect-rocm"
    assert {"exit_status": 3, "limit": 2} in step["retry"]["automatic"]
    assert step["artifact_paths"] == ["results/bisect-*/**/*"]
    fetch, command = step["commands"]
    assert "artifact download" in fetch and "|| echo" in fetch
    # What the agent's shell runs (after Buildkite turns $$ into $) parses as `harness bisect`.
    words = shlex.split(command.replace("$$", "$"))
    assert words[:2] == ["harness", "bisect"]
    args = build_parser().parse_args(words[1:])
    assert (args.case, args.platform, args.good, args.bad, args.tags_from, args.tag_pattern) == (
        "phi4mm_variable_crop", "rocm", GOOD, BAD, "vllm/vllm-openai-rocm", "nightly-$(x)")


@pytest.mark.parametrize("argv, message", [
    (["--case", "c", "--platform", "rocm"], "required: --good, --bad"),
    (["--case", "c", "--platform", "nope", "--good", "a:1", "--bad", "a:2", "--candidates", "f"],
     "unknown platform"),
    (["--case", "c", "--platform", "rocm", "--good", "a", "--bad", "b", "--candidates", "f",
      "--confirmations", "x"], "invalid int value"),
])
def test_bad_bisect_arguments_are_one_line_errors(capsys, argv, message):
    assert main(["pipeline", "--bisect", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
