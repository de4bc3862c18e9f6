"""The nightly's own bisect decision (harness/host/bisect/autoplan.py): each guard refuses with its
reason when tripped, and a newly broken ROCm case within every guard becomes one bisect of that
case alone. Pure: plain nights, results, tags and records in."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from harness.host.bisect.autoplan import (Observation, Settings, Tag, Tags, bisect_id, failure_key,
                                     kill_switch, max_runs_for, plan)
from harness.history.bisects import BisectRecord

NOW = datetime(2026, 12, 3, 3, 0, tzinfo=timezone.utc)
REPO = "127.0.0.1:5000/vllm/vllm-openai-rocm"
CASE = "phi4mm_variable_crop"
OTHER = "qwen2_5_vl_vit_cudagraph"
TAGS = Tags(REPO, tuple(Tag(f"nightly-{i:07x}", f"sha256:{i:064x}") for i in range(1, 17)))


def digest(i: int) -> str:
    return f"{REPO}@sha256:{i:064x}"


def obs(night: int, status: str, image: int, failure_class: str | None = None,
        commit: str | None = None, attempts: int | None = None,
        signature: str | None = None) -> Observation:
    return Observation(night, f"build-{night + 1}", status, failure_class,
                       commit or f"{night:040x}", digest(image), attempts, signature)


NIGHTS = [f"build-{i + 1}" for i in range(6)]


def broken_tonight(case: str = CASE, good_image: int = 4, bad_image: int = 12, age: int = 1,
                   failure_class: str = "crash", **tonight) -> list[Observation]:
    """Passing every night up to ``age`` nights before tonight, failing since."""
    tonight_index = len(NIGHTS) - 1
    rows = [obs(n, "passed", good_image) for n in range(tonight_index - age + 1)]
    rows += [obs(n, "failed", bad_image, failure_class, **tonight)
             for n in range(tonight_index - age + 1, tonight_index + 1)]
    return rows


def decide(series, baseline=None, records=(), settings=Settings(), tags=None):
    return plan(settings, NIGHTS, series, baseline or {}, {REPO: tags or TAGS}, list(records),
                NOW)


def refusal(result, case=CASE):
    [found] = [r for r in result.refusals if r.case_id == case]
    return found


def test_a_newly_broken_case_is_bisected_alone_between_last_good_and_first_bad_tags():
    result = decide({CASE: broken_tonight(), OTHER: [obs(n, "passed", 12) for n in range(6)]})
    [bisect] = result.bisects
    assert result.refusals == []
    assert (bisect.good.tag, bisect.bad.tag, bisect.candidates) == ("nightly-0000004",
                                                                    "nightly-000000c", 9)
    assert bisect.max_runs == math.ceil(math.log2(9)) + 4 == max_runs_for(9, 1)
    argv = bisect.request.argv()
    assert argv[argv.index("--case") + 1] == CASE and argv.count("--case") == 1  # only that case
    assert argv[argv.index("--tags-from") + 1] == REPO
    assert argv[argv.index("--tag-pattern") + 1] == "nightly-.*"
    assert argv[argv.index("--confirm-at") + 1] == "final"
    assert argv[argv.index("--max-total-runs") + 1] == str(bisect.max_runs)
    assert bisect.bisect_id == bisect_id(CASE, "rocm", "crash", "nightly-0000004",
                                         "nightly-000000c")


def test_kill_switch_from_the_environment_or_the_pipeline_refuses_every_bisect():
    assert kill_switch({"HARNESS_AUTOBISECT": "off"}, False) == \
        "HARNESS_AUTOBISECT=off in the environment"
    assert kill_switch({"HARNESS_AUTOBISECT": "0"}, False)
    assert kill_switch({}, True) == "the pipeline was generated with --no-autobisect"
    assert kill_switch({"HARNESS_AUTOBISECT": "on"}, False) is None
    result = decide({CASE: broken_tonight(), OTHER: broken_tonight(OTHER)},
                    settings=Settings(off=kill_switch({"HARNESS_AUTOBISECT": "off"}, False)))
    assert result.bisects == []
    assert {(r.case_id, r.kind) for r in result.refusals} == {(CASE, "kill-switch"),
                                                              (OTHER, "kill-switch")}
    assert refusal(result).reason == ("auto-bisect is off: HARNESS_AUTOBISECT=off in the "
                                      "environment")


def test_a_stale_last_good_is_refused_with_its_age():
    result = decide({CASE: broken_tonight(age=4)})  # last good 4 nights ago, default limit 3
    assert result.bisects == [] and refusal(result).kind == "stale"
    assert refusal(result).reason == ("the last good night (build-2) is 4 nights old, more than "
                                      "the 3 allowed")
    assert decide({CASE: broken_tonight(age=4)}, settings=Settings(max_age_nights=4)).bisects


def test_a_last_good_image_gone_from_the_registry_is_refused():
    result = decide({CASE: broken_tonight(good_image=99)})
    assert refusal(result).kind == "not-in-registry"
    assert "the last good image of build-5" in refusal(result).reason
    assert "no longer among the" in refusal(result).reason


def running(status="running", planned_at="2026-12-03T01:00:00+00:00", good="nightly-0000004",
            bad="nightly-000000c", signature="crash", reason=""):
    return BisectRecord("b-earlier", CASE, "rocm", signature, good, bad, status, "build-5",
                        planned_at, reason=reason)


def test_already_bisected_while_running_or_concluded_for_the_same_range():
    result = decide({CASE: broken_tonight()}, records=[running()])
    assert refusal(result).kind == "already-bisected"
    assert refusal(result).reason == ("already bisected for [crash] (b-earlier, running since "
                                      "2026-12-03T01:00:00+00:00)")
    concluded = running("found", reason="first bad: nightly-0000009")
    assert "found: first bad: nightly-0000009" in refusal(decide(
        {CASE: broken_tonight()}, records=[concluded])).reason
    # Another failure of the same case, a concluded bisect of another range, a lost bisect
    # (running for more than a day): none of them blocks.
    assert decide({CASE: broken_tonight()}, records=[running(signature="oom")]).bisects
    assert decide({CASE: broken_tonight()}, records=[running("found", good="nightly-0000001")]
                  ).bisects
    assert decide({CASE: broken_tonight()},
                  records=[running(planned_at="2026-12-01T01:00:00+00:00")]).bisects
    assert failure_key("failed", "crash") == "crash" and failure_key("failed", None) == "failed"


def test_the_nights_budget_is_shared_and_the_case_over_it_is_refused():
    cases = {CASE: broken_tonight(), OTHER: broken_tonight(OTHER)}
    result = decide(cases, settings=Settings(budget_runs=10))
    assert [b.case_id for b in result.bisects] == [CASE] and result.runs_granted == 8
    assert refusal(result, OTHER).kind == "budget"
    assert refusal(result, OTHER).reason == ("budget spent: tonight's bisects may make 10 engine "
                                             "runs, 8 are granted, this one needs up to 8")
    assert len(decide(cases, settings=Settings(budget_runs=16)).bisects) == 2


@pytest.mark.parametrize("tonight, baseline, kind", [
    (dict(failure_class="timeout", status="error"), None, "not-a-failure"),
    (dict(failure_class="oom", attempts=1), None, "retry"),
    (dict(), obs(5, "failed", 0, "crash"), "baseline"),
    (dict(commit="a" * 40), obs(5, "passed", 0, commit="b" * 40), "baseline"),
])
def test_not_a_rocm_only_verdict_is_refused(tonight, baseline, kind):
    status = tonight.pop("status", "failed")
    rows = broken_tonight(failure_class=tonight.pop("failure_class", "crash"), **tonight)
    rows[-1] = Observation(**{**rows[-1].__dict__, "status": status})
    result = decide({CASE: rows}, baseline={CASE: baseline} if baseline else {})
    assert result.bisects == [] and refusal(result).kind == kind, refusal(result)


def test_a_retried_failure_and_a_cuda_pass_on_the_same_commit_are_bisected():
    rows = broken_tonight(failure_class="oom", attempts=2, commit="c" * 40)
    cuda = obs(5, "passed", 0, commit="c" * 40)
    assert decide({CASE: rows}, baseline={CASE: cuda}).bisects
    skipped = obs(5, "skipped", 0)
    assert decide({CASE: rows}, baseline={CASE: skipped}).bisects  # CUDA did not run it


def test_never_passed_and_registry_errors_are_refused():
    never = [obs(n, "failed", 12, "crash") for n in range(6)]
    assert refusal(decide({CASE: never})).kind == "never-passed"
    broken = decide({CASE: broken_tonight()}, tags=Tags(REPO, error="HTTP 503"))
    assert refusal(broken).kind == "registry" and "HTTP 503" in refusal(broken).reason


def test_the_nightly_step_runs_the_autobisect_with_the_pipelines_settings(capsys):
    import yaml

    from harness.commands.cli import main

    assert main(["pipeline", "--nightly", "--history-db-env", "HARNESS_HISTORY_DB",
                 "--no-autobisect", "--bisect-max-age", "2", "--bisect-budget", "12"]) == 0
    steps = {s["key"]: s for s in yaml.safe_load(capsys.readouterr().out)["steps"]}
    [line] = [c for c in steps["nightly-history"]["commands"] if "autobisect" in c]
    assert line.startswith("harness autobisect plan --run-dir results/build-$BUILDKITE_BUILD_"
                           "NUMBER --db-env HARNESS_HISTORY_DB --platform rocm --baseline cuda")
    assert "--no-autobisect --bisect-max-age 2 --bisect-budget 12" in line
    commands = steps["nightly-history"]["commands"]
    # after the ingest (it reads tonight from the store), before the dashboard (which shows it)
    assert [i for i, c in enumerate(commands) if " ingest " in c][0] < commands.index(line) \
        < [i for i, c in enumerate(commands) if " dashboard " in c][0]


def test_the_uploaded_steps_are_valid_buildkite_and_the_stand_in_understands_them(tmp_path):
    import json as _json

    import jsonschema
    import yaml

    from harness.host.buildkite.autobisect_steps import bisect_steps
    from harness.host.buildkite.uploads import check_documents, render
    from harness.spec.case import load_platforms
    from tests.bkstandin_plan import parse_upload
    from tests.conftest import BUILDKITE_SCHEMA, CASES

    [planned] = decide({CASE: broken_tonight()}).bisects
    rocm = load_platforms(CASES / "platforms.yaml")["rocm"]
    steps = bisect_steps(planned, rocm, "harness", "results", None, "HARNESS_HISTORY_DB", "ops")
    document = {"steps": steps}
    check_documents([document], 10)
    text = render(document)
    schema = jsonschema.Draft7Validator(_json.loads(BUILDKITE_SCHEMA.read_text()))
    assert not list(schema.iter_errors(yaml.safe_load(text)))
    bisect, record = parse_upload(yaml.safe_load(text), "schedule")
    assert bisect.queue == rocm.queue and record.queue == "ops"
    assert record.depends_on[0].key == bisect.key and record.depends_on[0].allow_failure
    assert bisect.retry[0].exit_status == -1 and len(bisect.retry) == 1  # a lost agent only
    assert f"--max-total-runs {planned.max_runs}" in bisect.commands[-1]
    assert bisect.timeout_s == (rocm.timeout_minutes * planned.max_runs + 15) * 60


def test_the_same_failure_is_the_same_signature_not_only_the_same_class():
    signed = "phi4mm-ragged-image-mask"
    # A bisect running for this crash's signature blocks a second one for it...
    tonight = broken_tonight(signature=signed)
    result = decide({CASE: tonight}, records=[running(signature=signed)])
    assert refusal(result).reason.startswith(f"already bisected for [{signed}]")
    # ...but another crash (another rule, same class) of the same case is another failure.
    other = broken_tonight(signature="aiter-jit-build-failed [module=module_moe_ck2stages]")
    assert decide({CASE: other}, records=[running(signature=signed)]).bisects
    assert failure_key("failed", "crash", signed) == signed
