"""`harness pipeline`: the dynamic Buildkite pipeline, validated against Buildkite's own schema.

Every test validates the rendered YAML, i.e. what `harness pipeline` prints and the bootstrap
step pipes into `buildkite-agent pipeline upload`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
import pytest
import yaml

from harness.host.buildkite.pipeline import RESULTS, RUN_ID, PipelineOptions, plan_pipeline
from harness.host.buildkite.uploads import (PipelineError, check_documents, check_interpolation,
                                       check_key)
from harness.host.buildkite.shard import ShardPlan, select_shard, useful_shards, validate_shard
from harness.commands.cli import load_selection, main
from harness.runid import new_run_id
from harness.spec.case import load_platforms
from tests.conftest import BUILDKITE_SCHEMA, CASES, REAL_RUN, REPO

BOOTSTRAP = REPO / ".buildkite" / "pipeline.yml"
# The tests plan for an organisation with agents on all three lanes (the setting
# HARNESS_PLATFORMS, harness/spec/settings.py); the day-one default is tested on its own.
PLATFORMS = ["rocm", "cuda", "cpu"]


@pytest.fixture(scope="module")
def schema() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(BUILDKITE_SCHEMA.read_text()))


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # `harness pipeline` reads cases/ like it does on an agent
    monkeypatch.setenv("HARNESS_PLATFORMS", ",".join(PLATFORMS))
    for name in ("HARNESS_QUEUE_ROCM", "HARNESS_QUEUE_CUDA", "HARNESS_QUEUE_CPU"):
        monkeypatch.delenv(name, raising=False)


def generate(capsys, *argv: str) -> list[str]:
    """Every part `harness pipeline ARGV` prints (part 1, then --part 2.. as chained)."""
    texts: list[str] = []
    total = 1
    while len(texts) < total:
        code = main(["pipeline", *argv, "--part", str(len(texts) + 1)])
        out, err = capsys.readouterr()
        assert code == 0, err
        texts.append(out)
        total = int(re.search(r"part \d+ of (\d+)", err).group(1))
    return texts


def assert_valid(schema: jsonschema.Draft7Validator, text: str) -> dict:
    document = yaml.safe_load(text)
    errors = sorted(schema.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    return document


def own(commands: list[str]) -> list[str]:
    """A run step's commands without the retried job's download of the earlier job's results
    (harness.host.buildkite.retry_results; tests/test_retry_results.py)."""
    return [c for c in commands if "--include-retried-jobs" not in c]


def steps_by_key(document: dict) -> dict[str, dict]:
    return {step["key"]: step for step in document["steps"]}


def many_cases(tmp_path: Path, count: int) -> Path:
    """``count`` copies of a real case file, each with its own engine config (its own scope)."""
    source = (CASES / "qwen2_5_vl_vit_cudagraph.yaml").read_text()
    assert "max_num_seqs: 2" in source
    target = tmp_path / "many"
    target.mkdir()
    (target / "platforms.yaml").write_text((CASES / "platforms.yaml").read_text())
    for i in range(count):
        (target / f"case_{i:03d}.yaml").write_text(
            source.replace("max_num_seqs: 2", f"max_num_seqs: {i + 1}"))
    return target


# ---------------------------------------------------------------- schema, every variant


VARIANTS = {
    "default": [],
    "nightly": ["--nightly", "--history-db-env", "HARNESS_HISTORY_DB"],
    "single-platform": ["--platform", "rocm"],
    "keyword": ["-k", "qwen and not phi4"],
    "parallelism": ["--parallelism", "4"],
    "image-builds": ["--build-images", "--push-images"],
    "everything": ["--nightly", "--history-db", "/var/lib/h.sqlite", "--parallelism", "2", "--build-images", "--queue", "cpu",
                   "--compare", "cuda:rocm", "--compare", "cpu:rocm",
                   "--test-engine-token-env", "BUILDKITE_ANALYTICS_TOKEN"],
}


@pytest.mark.parametrize("argv", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_variant_validates_against_buildkites_schema(capsys, schema, argv):
    for text in generate(capsys, *argv):
        assert_valid(schema, text)


def test_a_pipeline_over_500_jobs_is_split_into_valid_chained_uploads(capsys, schema, tmp_path):
    # 3 platforms x 170 shards = 510 jobs, + the GPU reference, compare, nightly
    cases = many_cases(tmp_path, 170)
    assert main(["pipeline", "--cases", str(cases), "--platform", "rocm,cuda,cpu",
                 "--parallelism", "170", "--nightly", "--gpu-reference",
                 "--history-db", "/var/lib/h.sqlite"]) == 0
    part1, err = capsys.readouterr()
    assert "part 1 of 2" in err
    # Part 1 ends with the step that uploads part 2: run its generator as the agent would.
    chain = assert_valid(schema, part1)["steps"][-1]
    assert chain["key"] == "pipeline-part-2"
    generator, upload = chain["commands"][1].split(" | ")
    assert upload == "buildkite-agent pipeline upload"
    words = shlex.split(generator)
    assert words[:2] == ["harness", "pipeline"] and words[-2:] == ["--part", "2"]
    assert main(words[1:]) == 0
    part2 = capsys.readouterr().out
    documents = [assert_valid(schema, part1), assert_valid(schema, part2)]
    jobs = [sum(step.get("parallelism", 1) for step in d["steps"]) for d in documents]
    assert all(count <= 500 for count in jobs) and sum(jobs) == 510 + 1 + 1 + 1 + 1
    # Every dependency is uploaded before or with the step that needs it.
    keys = set(steps_by_key(documents[0])) | set(steps_by_key(documents[1]))
    for step in documents[1]["steps"]:
        assert {d["step"] for d in step.get("depends_on", [])} <= keys


def test_a_small_upload_limit_chains_every_part(capsys, schema):
    texts = generate(capsys, "--max-jobs-per-upload", "2", "--nightly", "--gpu-reference",
                     "--history-db-env", "H")
    documents = [assert_valid(schema, text) for text in texts]
    # each run, the GPU reference, compare, nightly: one per part
    assert len(documents) == len(PLATFORMS) + 3
    for number, document in enumerate(documents[:-1], 1):
        assert document["steps"][-1]["key"] == f"pipeline-part-{number + 1}"
        assert f"--max-jobs-per-upload 2 --part {number + 1} |" in \
            document["steps"][-1]["commands"][1]


def test_the_schema_check_has_teeth(capsys, schema):
    """A UUID-like key and a misspelt field are rejected by the schema itself."""
    document = yaml.safe_load(generate(capsys)[0])
    document["steps"][0]["key"] = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert list(schema.iter_errors(document))
    document = yaml.safe_load(generate(capsys)[0])
    document["steps"][0]["timeout_minutes"] = 5
    assert list(schema.iter_errors(document))


def test_the_bootstrap_pipeline_validates_and_pipes_harness_pipeline_into_upload(schema):
    document = assert_valid(schema, BOOTSTRAP.read_text())
    commands = [" ".join(step["commands"]) for step in document["steps"]]
    assert all("| buildkite-agent pipeline upload" in c and "set -o pipefail" in c
               for c in commands)
    assert any("harness pipeline --nightly --history-db-env HARNESS_HISTORY_DB |" in c
               for c in commands)
    assert "$" not in BOOTSTRAP.read_text()  # nothing for upload-time interpolation to eat


# ---------------------------------------------------------------- what the steps do


def test_default_pipeline_runs_each_platform_on_its_queue_then_compares(capsys):
    steps = steps_by_key(yaml.safe_load(generate(capsys)[0]))
    assert list(steps) == [f"run-{name}" for name in PLATFORMS] + ["compare-cuda-vs-rocm"]
    rocm, cuda, cpu = steps["run-rocm"], steps["run-cuda"], steps["run-cpu"]
    assert (rocm["agents"], cuda["agents"], cpu["agents"]) == (
        {"queue": "amd_mi300_1"}, {"queue": "gpu_1_queue"}, {"queue": "cpu_queue_premerge"})
    assert own(rocm["commands"]) == [  # hub snapshots first, outside the run's startup deadline
        "harness models fetch --platform rocm",
        "harness run --platform rocm --run-id build-$BUILDKITE_BUILD_NUMBER --pull always"]
    assert own(cpu["commands"]) == ["harness run --platform cpu --run-id "
                                    "build-$BUILDKITE_BUILD_NUMBER"]
    assert cpu["timeout_in_minutes"] == 45 + 15  # local, tiny models: no fetch, no pull
    assert rocm["artifact_paths"] == ["results/build-$BUILDKITE_BUILD_NUMBER/rocm/**/*"]
    # Retried for infrastructure only: agent lost, the harness's infra exit (a GPU hang is
    # classified and retried inside the harness, which exits 0-3 only).
    assert [r["exit_status"] for r in rocm["retry"]["automatic"]] == [-1, 3]
    assert [r["exit_status"] for r in cuda["retry"]["automatic"]] == [-1, 3]
    # A candidate's failures are never soft: ROCm failing is red whatever CUDA did. Only the
    # baseline's own failures are left to the compare step.
    assert [s["exit_status"] for s in rocm["soft_fail"]] == [3]
    assert [s["exit_status"] for s in cuda["soft_fail"]] == [1, 3]
    assert [s["exit_status"] for s in cpu["soft_fail"]] == [3]
    compare = steps["compare-cuda-vs-rocm"]
    assert compare["depends_on"] == [{"step": "run-cuda", "allow_failure": True},
                                     {"step": "run-rocm", "allow_failure": True}]
    assert compare["soft_fail"] == [{"exit_status": 3}]
    script = "\n".join(compare["commands"])
    assert ("harness compare results/build-$BUILDKITE_BUILD_NUMBER --baseline cuda --candidate rocm"
            " --markdown compare/cuda-vs-rocm.md --junit compare/cuda-vs-rocm.xml"
            " --json compare/cuda-vs-rocm.json") in script
    assert "--context harness-compare-cuda-vs-rocm" in script
    assert "plugins" not in compare  # Test Engine is opt-in: see the next test


def test_test_engine_upload_is_opt_in_by_naming_the_token_variable(capsys):
    """The test-collector plugin's hook exits 1 when its token is unset: an organisation
    without Test Engine must not get it. Naming the token's variable opts in."""
    default = steps_by_key(yaml.safe_load(generate(capsys)[0]))
    assert not [key for key, step in default.items() if "plugins" in step]
    texts = generate(capsys, "--test-engine-token-env", "BUILDKITE_ANALYTICS_TOKEN")
    compare = steps_by_key(yaml.safe_load(texts[0]))["compare-cuda-vs-rocm"]
    assert compare["plugins"] == [{"test-collector#v1.11.0": {
        "files": "compare/cuda-vs-rocm.xml", "format": "junit",
        "api-token-env-name": "BUILDKITE_ANALYTICS_TOKEN"}}]
    assert "$BUILDKITE_ANALYTICS_TOKEN" not in texts[0]  # by name, never expanded
    assert main(["pipeline", "--test-engine-token-env", "NOT A NAME"]) == 2
    assert "expected an environment variable's name" in capsys.readouterr().err


def test_rocm_alone_compares_without_waiting_for_an_absent_cuda_agent(capsys):
    steps = steps_by_key(yaml.safe_load(generate(capsys, "--platform", "rocm")[0]))
    assert list(steps) == ["run-rocm", "compare-cuda-vs-rocm"]
    assert steps["run-rocm"]["soft_fail"] == [{"exit_status": 3}]
    compare = steps["compare-cuda-vs-rocm"]
    assert compare["depends_on"] == [{"step": "run-rocm", "allow_failure": True}]
    assert not any("/cuda/" in command for command in compare["commands"])
    steps = steps_by_key(yaml.safe_load(generate(
        capsys, "--platform", "rocm", "--baseline-run", "/var/lib/harness/nightly-cuda")[0]))
    assert any("--baseline-run /var/lib/harness/nightly-cuda" in command
               for command in steps["compare-cuda-vs-rocm"]["commands"])


def test_a_baseline_without_a_candidate_has_no_compare_step(capsys):
    steps = steps_by_key(yaml.safe_load(generate(capsys, "--platform", "cuda")[0]))
    assert list(steps) == ["run-cuda"]


def test_keyword_selection_reaches_the_run_command_quoted(capsys):
    steps = steps_by_key(yaml.safe_load(generate(capsys, "-k", "cudagraph[rocm] or phi4mm")[0]))
    assert list(steps) == [f"run-{name}" for name in PLATFORMS] + ["compare-cuda-vs-rocm"]
    assert own(steps["run-rocm"]["commands"]) == [
        "harness models fetch --platform rocm -k 'cudagraph[rocm] or phi4mm'",
        "harness run --platform rocm --run-id build-$BUILDKITE_BUILD_NUMBER"
        " -k 'cudagraph[rocm] or phi4mm' --pull always"]


def test_keyword_that_narrows_platforms_drops_their_steps(capsys):
    steps = steps_by_key(yaml.safe_load(generate(capsys, "-k", "cudagraph and rocm")[0]))
    assert list(steps) == ["run-rocm", "compare-cuda-vs-rocm"]  # rocm reported on its own
    assert steps["compare-cuda-vs-rocm"]["depends_on"] == [
        {"step": "run-rocm", "allow_failure": True}]


def test_keyword_that_selects_nothing_is_a_usage_error(capsys):
    assert main(["pipeline", "-k", "no_such_case"]) == 2
    assert "no job matches the selection" in capsys.readouterr().err
    assert main(["pipeline", "-k", "qwen and ("]) == 2
    assert "bad -k expression" in capsys.readouterr().err


def test_parallelism_shards_by_buildkite_parallel_job_and_is_capped(capsys):
    steps = steps_by_key(yaml.safe_load(generate(capsys, "--parallelism", "4")[0]))
    run = steps["run-rocm"]
    assert run["parallelism"] == 2  # two cases (two engine scopes): a third job would idle
    assert run["label"] == "run rocm %n"
    assert run["commands"][-1].endswith(' --shard-index "$$BUILDKITE_PARALLEL_JOB"'
                                       ' --shard-count "$$BUILDKITE_PARALLEL_JOB_COUNT"')


def test_image_builds_come_first_and_the_run_waits_for_them(capsys, monkeypatch):
    monkeypatch.delenv("HARNESS_REGISTRY", raising=False)
    monkeypatch.delenv("HARNESS_NAMESPACE", raising=False)
    steps = steps_by_key(yaml.safe_load(generate(capsys, "--build-images", "--push-images",
                                                 "--registry", "ghcr.io/me")[0]))
    assert "image-cpu" not in steps  # a local platform has no image
    image = steps["image-rocm"]
    assert image["agents"] == {"queue": "amd_mi300_1"}
    # Built (--pull, BuildKit, tagged by vLLM version) and pushed by `harness image build`, under
    # this build's own tag, which the run step then runs: never an image built by hand.
    this_build = "ghcr.io/me/vllm-harness/vllm-harness:rocm-build-$BUILDKITE_BUILD_NUMBER"
    assert image["commands"] == [
        f"harness image build --platform rocm --image {this_build} --registry ghcr.io/me --push"]
    assert f"--image {this_build}" in steps["run-rocm"]["commands"][-1]
    assert steps["run-rocm"]["depends_on"] == "image-rocm"
    assert "depends_on" not in steps["run-cpu"] and "--image" not in steps["run-cpu"]["commands"][-1]


def test_image_option_runs_that_image_without_building(capsys):
    steps = steps_by_key(yaml.safe_load(generate(
        capsys, "--platform", "rocm,cuda", "--image", "rocm=vllm/vllm-openai-rocm:nightly-abc123",
        "--no-compare")[0]))
    assert "image-rocm" not in steps
    assert "--image vllm/vllm-openai-rocm:nightly-abc123" in steps["run-rocm"]["commands"][-1]
    assert "--image" not in steps["run-cuda"]["commands"][-1]


def test_bare_image_option_needs_one_container_platform(capsys):
    assert main(["pipeline", "--platform", "rocm,cuda", "--image", "x/y:z"]) == 2
    assert "exactly one container platform" in capsys.readouterr().err
    steps = steps_by_key(yaml.safe_load(generate(capsys, "--platform", "rocm,cpu", "--image",
                                                 "registry.example:5000/x/y:z",
                                                 "--no-compare")[0]))
    assert "--image registry.example:5000/x/y:z" in steps["run-rocm"]["commands"][-1]


def test_nightly_adds_ingest_and_dashboard_after_everything(capsys):
    steps = steps_by_key(yaml.safe_load(generate(capsys, "--nightly", "--history-db-env",
                                                 "HARNESS_HISTORY_DB")[0]))
    nightly = steps["nightly-history"]
    assert list(steps)[-1] == "nightly-history"
    assert [d["step"] for d in nightly["depends_on"]] == [
        f"run-{name}" for name in PLATFORMS] + ["compare-cuda-vs-rocm"]
    assert all(d["allow_failure"] for d in nightly["depends_on"])
    script = "\n".join(nightly["commands"])
    assert ("harness ingest results/build-$BUILDKITE_BUILD_NUMBER --db-env HARNESS_HISTORY_DB"
            in script)
    assert "harness dashboard --db-env HARNESS_HISTORY_DB --out results/dashboard.html" in script
    assert nightly["artifact_paths"] == ["results/dashboard.html"]


@pytest.mark.parametrize("argv, says", [
    ([], "--nightly needs a history store that outlives the build"),
    (["--history-db", "results/history.sqlite"], "a relative path lies in the checkout"),
    (["--history-db", "postgresql://u:pw@db/h"], "give --history-db-env NAME"),
    (["--history-db-env", "postgresql://u:pw@db/h"], "an environment variable name (letters, digits, _), not a value"),
])
def test_a_nightly_without_a_lasting_store_is_refused_saying_how_to_set_one(capsys, argv, says):
    assert main(["pipeline", "--nightly", *argv]) == 2
    out, err = capsys.readouterr()
    assert says in err and out == ""
    assert "pw@" not in err


def test_nightly_history_db_is_passed_on_to_ingest_dashboard_and_chained_parts(capsys):
    text = generate(capsys, "--nightly", "--history-db", "/var/lib/harness/h.sqlite",
                    "--max-jobs-per-upload", "3")
    documents = [yaml.safe_load(t) for t in text]
    nightly = steps_by_key(documents[-1])["nightly-history"]
    assert "--db /var/lib/harness/h.sqlite" in "\n".join(nightly["commands"])
    chain = documents[0]["steps"][-1]["commands"][1]
    assert "--history-db /var/lib/harness/h.sqlite" in chain


def test_step_keys_are_stable_under_platform_reordering(capsys, tmp_path, cases_copy):
    platforms = yaml.safe_load((cases_copy / "platforms.yaml").read_text())
    platforms["platforms"] = dict(reversed(list(platforms["platforms"].items())))
    (cases_copy / "platforms.yaml").write_text(yaml.safe_dump(platforms, sort_keys=False))
    first = steps_by_key(yaml.safe_load(generate(capsys)[0]))
    reordered = steps_by_key(yaml.safe_load(generate(capsys, "--cases", str(cases_copy))[0]))
    assert set(first) == set(reordered)
    assert generate(capsys) == generate(capsys)  # and the text itself is deterministic


def test_unknown_compare_platform_and_missing_part_are_usage_errors(capsys):
    assert main(["pipeline", "--compare", "cuda:nope"]) == 2
    assert "unknown platform 'nope'" in capsys.readouterr().err
    assert main(["pipeline", "--compare", "cuda"]) == 2
    assert "BASELINE:CANDIDATE" in capsys.readouterr().err
    assert main(["pipeline", "--part", "2"]) == 2
    assert "has 1 part(s)" in capsys.readouterr().err


def test_run_id_matches_what_harness_run_picks_on_buildkite():
    interpolated = RUN_ID.replace("$BUILDKITE_BUILD_NUMBER", "1234")
    assert interpolated == new_run_id({"BUILDKITE_BUILD_NUMBER": "1234"})


# ---------------------------------------------------------------- the checks themselves


@pytest.mark.parametrize("key", ["3f2504e0-4f89-11d3-9a0c-0305e82c3301", "has space", "",
                                 "run-3F2504E04F8911D39A0C0305E82C3301", "x" * 101])
def test_check_key_refuses_uuid_like_and_malformed_keys(key):
    with pytest.raises(PipelineError):
        check_key(key)


def test_check_interpolation_allows_only_the_build_number_unescaped():
    check_interpolation({"steps": [{"command": "echo build-$BUILDKITE_BUILD_NUMBER $$HOME"}]})
    for bad in ("echo $HOME", "echo ${BUILDKITE_PARALLEL_JOB}", "echo $?", "cost: 5$"):
        with pytest.raises(PipelineError, match=r"steps\[0\]\.command"):
            check_interpolation({"steps": [{"command": bad}]})


def test_duplicate_keys_and_dependencies_on_later_parts_are_refused():
    run = {"key": "run-rocm", "command": "true"}
    with pytest.raises(PipelineError, match="used twice"):
        check_documents([{"steps": [run, run]}], 500)
    compare = {"key": "compare-x", "command": "true", "depends_on": [{"step": "run-rocm"}]}
    with pytest.raises(PipelineError, match="not uploaded before or with part 1"):
        check_documents([{"steps": [compare]}, {"steps": [run]}], 500)
    check_documents([{"steps": [run]}, {"steps": [compare]}], 500)


def test_plan_pipeline_refuses_a_step_too_big_for_one_upload(tmp_path):
    cases = many_cases(tmp_path, 4)
    _, platforms, _, jobs = load_selection(_selection(cases, "cpu"))
    options = PipelineOptions(platforms=("cpu",), parallelism=4, max_jobs_per_upload=4)
    with pytest.raises(PipelineError, match="run-cpu has 4 jobs"):
        plan_pipeline(jobs, platforms, options)


def test_a_secret_looking_build_arg_is_refused(tmp_path, cases_copy):
    text = (cases_copy / "platforms.yaml").read_text()
    (cases_copy / "platforms.yaml").write_text(
        text.replace('BASE_TAG: "nightly"}', 'BASE_TAG: "nightly", HF_TOKEN: "x"}', 1))
    _, platforms, _, jobs = load_selection(_selection(cases_copy, "rocm"))
    with pytest.raises(PipelineError, match="HF_TOKEN looks like a secret"):
        plan_pipeline(jobs, platforms, PipelineOptions(platforms=("rocm",), build_images=True))


def _selection(cases: Path, platform: str):
    import argparse

    return argparse.Namespace(cases=cases, platforms_file=None, platform=[platform], keyword=None)


# ---------------------------------------------------------------- sharding (pure)


def _jobs(cases: Path, platforms: str):
    import argparse

    selection = argparse.Namespace(cases=cases, platforms_file=None,
                                   platform=platforms.split(","), keyword=None)
    return load_selection(selection)[3]


def test_shards_cover_every_job_exactly_once_and_deterministically(tmp_path):
    jobs = _jobs(many_cases(tmp_path, 7), "rocm,cpu")
    for count in range(1, 9):
        shards = [select_shard(jobs, index, count) for index in range(count)]
        ids = [job.id for shard in shards for job in shard]
        assert sorted(ids) == sorted(job.id for job in jobs)  # each job once, none lost
        assert shards == [select_shard(jobs, i, count) for i in range(count)]  # repeatable
        # Order-independent: shuffling the plan moves no job to another shard.
        reordered = ShardPlan.build(list(reversed(jobs)), count).assignment
        assert reordered == ShardPlan.build(jobs, count).assignment
        for platform in ("rocm", "cpu"):
            loads = [sum(1 for job in shard if job.platform.name == platform) for shard in shards]
            assert max(loads) - min(loads) <= 1  # one scope per case here: balanced to one job
    assert useful_shards([j for j in jobs if j.platform.name == "cpu"], 50) == 7


def test_jobs_that_share_an_engine_share_a_shard(tmp_path):
    cases = many_cases(tmp_path, 4)
    # case_000 and case_001 now have the same engine config: one engine, so one shard.
    (cases / "case_001.yaml").write_text((cases / "case_000.yaml").read_text())
    jobs = _jobs(cases, "cpu")
    plan = ShardPlan.build(jobs, 3)
    assert plan.assignment["case_000@cpu"] == plan.assignment["case_001@cpu"]
    assert useful_shards(jobs, 10) == 3
    assert sorted(len(plan.jobs_for(jobs, i)) for i in range(3)) == [1, 1, 2]


def test_more_shards_than_scopes_leaves_some_empty(tmp_path):
    jobs = _jobs(many_cases(tmp_path, 2), "cpu")
    assert [len(select_shard(jobs, i, 3)) for i in range(3)] == [1, 1, 0]


@pytest.mark.parametrize("index,count", [(0, 0), (-1, 2), (2, 2)])
def test_bad_shard_index_or_count_is_refused(index, count):
    with pytest.raises(ValueError, match="shard"):
        validate_shard(index, count)


# ---------------------------------------------------------------- the compare step, end to end


def real_cpu_results() -> Path:
    found = sorted(REAL_RUN.glob("*/cpu/*.json"))
    assert found, f"{REAL_RUN} holds no <run>/cpu/*.json: the committed real CPU results are gone"
    return found[0].parent


def publish_as(source: Path, artifacts: Path, platform: str, run_id: str,
               regress: str | None = None) -> None:
    """Real CPU results as another platform's artifacts: platform renamed, maybe one regressed."""
    target = artifacts / RESULTS / run_id / platform
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.suffix != ".json":
            shutil.copyfile(path, target / path.name)
            continue
        result = json.loads(path.read_text())
        result.update(platform=platform, run_id=run_id,
                      job_id=f"{result['case_id']}@{platform}")
        if result["case_id"] == regress:
            result.update(status="failed", failure_class="check-failed",
                          message="requests_succeed: 1 of 3 requests failed")
        (target / path.name).write_text(json.dumps(result, indent=2))


def run_bash(commands: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # The agent joins a step's commands into one script for `bash -e -c` (its default shell).
    return subprocess.run(["bash", "-e", "-c", "\n".join(commands)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def fake_build(tmp_path: Path, variant: str, bootstrap_key: str = "pipeline-upload"):
    """Real CPU results published as cuda and rocm artifacts of build 7, and the pipeline the
    bootstrap step uploaded for it; returns (pipeline, state, checkout, env, passed cases)."""
    source = real_cpu_results()
    passed = sorted(json.loads(p.read_text())["case_id"] for p in source.glob("*.json")
                    if json.loads(p.read_text())["status"] == "passed")
    assert passed, f"{source}: no passed case to turn into a regression"
    state, checkout = tmp_path / "buildkite", tmp_path / "checkout"
    checkout.mkdir()
    publish_as(source, state / "artifacts", "cuda", "build-7")
    if variant != "infra":  # infra: the rocm step left nothing behind
        publish_as(source, state / "artifacts", "rocm", "build-7",
                   regress=passed[0] if variant == "regression" else None)
    env = {**os.environ, "BUILDKITE": "true", "BUILDKITE_BUILD_NUMBER": "7",
           "FAKE_BUILDKITE_DIR": str(state),
           "PATH": os.pathsep.join([str(REPO / "tests" / "bin"), str(Path(sys.executable).parent),
                                    os.environ["PATH"]])}
    bootstrap = steps_by_key(yaml.safe_load(BOOTSTRAP.read_text()))[bootstrap_key]
    done = run_bash(bootstrap["commands"], REPO, env)
    assert done.returncode == 0, done.stderr
    pipeline = steps_by_key(yaml.safe_load((state / "uploads" / "1.yml").read_text()))
    return pipeline, state, checkout, env, passed


def agent_calls(state: Path, command: str) -> list[list[str]]:
    calls = map(json.loads, (state / "calls.jsonl").read_text().splitlines())
    return [call["argv"] for call in calls if call["argv"][0] == command]


@pytest.mark.parametrize("variant", ["parity", "regression", "infra"])
def test_compare_step_end_to_end_fake_buildkite_agent(tmp_path, variant):
    """The bootstrap uploads the pipeline; the compare step's own commands run against it."""
    pipeline, state, checkout, env, passed = fake_build(tmp_path, variant)
    compare = pipeline["compare-cuda-vs-rocm"]
    done = run_bash(compare["commands"], checkout, env)

    code, style = {"parity": (0, "success"), "regression": (1, "error"),
                   "infra": (3, "warning")}[variant]
    assert done.returncode == code, done.stdout + done.stderr
    soft = [entry["exit_status"] for entry in compare["soft_fail"]]
    assert (code in soft) == (variant == "infra")  # only a regression fails the build
    context = "harness-compare-cuda-vs-rocm"
    assert agent_calls(state, "annotate") == [
        ["annotate", "--context", context, "--style", style]]
    assert (state / "annotations" / f"{context}.style").read_text() == style
    body = (state / "annotations" / f"{context}.md").read_text()
    assert body == (checkout / "compare" / "cuda-vs-rocm.md").read_text()
    text = body.replace("\\", "")  # Markdown escapes: phi4mm\_variable\_crop
    for case in passed:
        assert case in text
    if variant == "regression":
        assert re.search(rf"\| {passed[0]} \|[^\n]*regress", text, re.I), text
    if variant == "infra":
        assert re.search(r"missing|no results", body, re.I)
    # The JUnit file the Test Engine plugin uploads, and the JSON summary, are there.
    junit = checkout / "compare" / "cuda-vs-rocm.xml"
    assert ElementTree.parse(junit).getroot().tag in ("testsuites", "testsuite")
    assert json.loads((checkout / "compare" / "cuda-vs-rocm.json").read_text())


def test_compare_step_retry_replaces_its_annotation_fake_buildkite_agent(tmp_path):
    pipeline, state, checkout, env, _ = fake_build(tmp_path, "regression")
    commands = pipeline["compare-cuda-vs-rocm"]["commands"]
    assert run_bash(commands, checkout, env).returncode == 1
    assert run_bash(commands, checkout, env).returncode == 1  # the retry
    annotations = list((state / "annotations").glob("*.md"))
    assert [p.name for p in annotations] == ["harness-compare-cuda-vs-rocm.md"]
    assert annotations[0].read_text() == (checkout / "compare" / "cuda-vs-rocm.md").read_text()


def test_nightly_step_end_to_end_fake_buildkite_agent(tmp_path):
    pipeline, state, checkout, env, passed = fake_build(tmp_path, "parity",
                                                        "pipeline-upload-nightly")
    nightly = pipeline["nightly-history"]
    store = tmp_path / "lasting" / "history.sqlite"  # outside the checkout
    done = run_bash(nightly["commands"], checkout, {**env, "HARNESS_HISTORY_DB": str(store)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert store.is_file() and str(store) not in "\n".join(nightly["commands"])
    assert "no cpu results to download" in done.stdout  # cpu left nothing: reported, not fatal
    dashboard = checkout / nightly["artifact_paths"][0]
    page = dashboard.read_text()
    assert all(case in page for case in passed)
    body = (state / "annotations" / "harness-nightly-dashboard.md").read_text()
    assert "(artifact://results/dashboard.html)" in body


def test_options_survive_the_round_trip_through_the_chained_command_line():
    """The chained upload step re-runs `harness pipeline` with ``argv()``: nothing may be lost."""
    import argparse

    from harness.host.buildkite.pipeline import Comparison
    from harness.commands.pipeline import add_arguments, options_from

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for options in (PipelineOptions(),
                    PipelineOptions(comparisons=()),
                    PipelineOptions(platforms=("rocm", "cpu"), keyword="qwen and not phi",
                                    nightly=True, parallelism=3, build_images=True,
                                    push_images=True, cases="cases/sub", platforms_file="p.yaml",
                                    comparisons=(Comparison("cpu", "rocm"),), queue="cpu",
                                    history_db="/var/lib/h.sqlite", max_jobs_per_upload=50,
                                    harness=".venv/bin/harness",
                                    test_engine_token_env="BUILDKITE_ANALYTICS_TOKEN"),
                    PipelineOptions(nightly=True, history_db_env="H", no_autobisect=True,
                                    bisect_max_age=2, bisect_budget=10,
                                    bisect_tags_from="rocm/vllm-dev",
                                    bisect_tag_pattern="nightly_.*")):
        assert options_from(parser.parse_args(options.argv())) == options


def test_run_steps_without_a_built_image_pull_the_moving_tag_afresh(capsys):
    steps = steps_by_key(yaml.safe_load(generate(capsys, "--platform", "rocm,cpu",
                                                 "--no-compare")[0]))
    assert "--pull always" in steps["run-rocm"]["commands"][-1]
    assert "--pull" not in steps["run-cpu"]["commands"][-1]
    built = steps_by_key(yaml.safe_load(generate(capsys, "--platform", "rocm", "--build-images",
                                                 "--no-compare")[0]))
    assert "--pull" not in built["run-rocm"]["commands"][-1]  # its own build's tag

def test_retry_rules_match_exit_codes_the_harness_really_produces(capsys):
    from harness.host.buildkite.pipeline import AGENT_LOST
    from harness.outcomes import EXIT_CODES

    steps = yaml.safe_load(generate(capsys, "--nightly", "--history-db", "/var/lib/h.sqlite",
                                       "--build-images")[0])["steps"]
    for step in steps:
        for rule in step.get("retry", {}).get("automatic", []):
            assert rule["exit_status"] in (AGENT_LOST, *EXIT_CODES), (step["key"], rule)


def test_run_step_timeout_counts_the_model_fetch_and_the_image_pull(capsys):
    """A GPU run step waits for the hub fetch, the image pull and the run, each with its own
    deadline: the step's timeout is their sum plus a margin, so a slow pull or a first fetch
    never makes Buildkite kill a step whose harness would still have written results."""
    from harness.host.images import PULL_TIMEOUT_S
    from harness.models.fetch import FETCH_TIMEOUT_S

    steps = steps_by_key(yaml.safe_load(generate(capsys, "--platform", "rocm,cpu")[0]))
    platforms = load_platforms(CASES / "platforms.yaml")
    rocm = platforms["rocm"]
    assert steps["run-rocm"]["timeout_in_minutes"] == (
        FETCH_TIMEOUT_S // 60 + PULL_TIMEOUT_S // 60 + rocm.timeout_minutes + 15)
    assert steps["run-cpu"]["timeout_in_minutes"] == platforms["cpu"].timeout_minutes + 15


def test_day_one_bootstrap_plans_only_what_every_organisation_has(capsys, monkeypatch):
    """Without settings the nightly plans the rocm lane alone (cuda and cpu need agents an
    organisation may not have): nothing waits for an absent agent, and compare (rocm reported
    alone) and the history step still run after it."""
    monkeypatch.delenv("HARNESS_PLATFORMS")
    text = generate(capsys, "--nightly", "--history-db-env", "HARNESS_HISTORY_DB")[0]
    steps = steps_by_key(yaml.safe_load(text))
    assert list(steps) == ["run-rocm", "compare-cuda-vs-rocm", "nightly-history"]
    assert {s["agents"]["queue"] for s in steps.values() if "agents" in s} == {"amd_mi300_1"}
    assert [d["step"] for d in steps["compare-cuda-vs-rocm"]["depends_on"]] == ["run-rocm"]
    assert [d["step"] for d in steps["nightly-history"]["depends_on"]] == [
        "run-rocm", "compare-cuda-vs-rocm"]
    assert "Generated by `harness pipeline --platform rocm --nightly" in text  # said, not implied


def test_platforms_and_queues_are_settings_of_the_organisation(capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_PLATFORMS", "rocm,cuda")
    monkeypatch.setenv("HARNESS_QUEUE_ROCM", "amd_mi355_1")
    monkeypatch.setenv("HARNESS_QUEUE_CUDA", "mithril-h100-pool")
    steps = steps_by_key(yaml.safe_load(generate(capsys)[0]))
    assert list(steps) == ["run-rocm", "run-cuda", "compare-cuda-vs-rocm"]
    assert steps["run-rocm"]["agents"] == {"queue": "amd_mi355_1"}
    assert steps["run-cuda"]["agents"] == {"queue": "mithril-h100-pool"}
    explicit = steps_by_key(yaml.safe_load(generate(capsys, "--platform", "cpu")[0]))
    assert list(explicit) == ["run-cpu"]  # --platform wins over the setting
    monkeypatch.setenv("HARNESS_PLATFORMS", "rocm,tpu")
    assert main(["pipeline"]) == 2
    assert "HARNESS_PLATFORMS='rocm,tpu': unknown platform 'tpu'" in capsys.readouterr().err
    monkeypatch.setenv("HARNESS_PLATFORMS", "rocm")
    monkeypatch.setenv("HARNESS_QUEUE_ROCM", "amd mi300; rm -rf /")
    assert main(["pipeline"]) == 2
    assert "HARNESS_QUEUE_ROCM" in capsys.readouterr().err
