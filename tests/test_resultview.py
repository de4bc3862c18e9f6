"""The one reader for compare and ingest (harness.resultview): the same schema as the pydantic
Result, the same one-line reasons for a bad file, and the same reader behind both commands."""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from pydantic import BaseModel, field_validator

from harness import resultview
from harness.compare.load import load_side
from harness.history.runread import IncompleteRun, read_run
from harness.results import (CheckResult, Result, ResultFileError, TopLogprob, read_result,
                             write_result)
from harness.resultview import ResultView, read_result_view, view_of
from tests.test_history_data import real_run


def real_files():
    return sorted(p for p in real_run().glob("*/*.json") if not p.name.startswith("."))


def as_pydantic_would(path) -> dict:
    """What pydantic's reader holds, less what the view drops."""
    data = read_result(path).model_dump()
    data["traces"] = {}
    for check in data["checks"]:
        check["evidence"] = {}
    return data


def test_the_view_holds_what_pydantic_reads_less_traces_and_evidence():
    for path in real_files():
        view = read_result_view(path)
        assert msgspec.to_builtins(view) == as_pydantic_would(path)
        assert view.requests and view.requests[0].logprobs[0][0].token_id >= 0
        assert view.traces == {} and all(c.evidence == {} for c in view.checks)


def test_every_model_field_is_mirrored_with_its_default():
    def models(model, seen):
        seen.add(model)
        for info in model.__pydantic_fields__.values():
            for inner in [info.annotation, *_args(info.annotation)]:
                if isinstance(inner, type) and hasattr(inner, "__pydantic_fields__") \
                        and inner not in seen:
                    models(inner, seen)
        return seen

    for model in models(Result, set()):
        view = view_of(model)
        assert view.__struct_fields__ == tuple(model.__pydantic_fields__), model
        minimal = {name: info.default for name, info in model.__pydantic_fields__.items()
                   if info.is_required()}
        if not minimal:  # every field has a default: the defaults must agree
            assert msgspec.to_builtins(view()) == json.loads(model().model_dump_json()), model


def _args(annotation):
    import typing

    out = []
    for arg in typing.get_args(annotation):
        out += [arg, *_args(arg)]
    return out


def test_a_model_with_a_validator_cannot_be_mirrored():
    class Checked(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def not_empty(cls, value: str) -> str:
            return value

    with pytest.raises(TypeError, match="validators"):
        view_of(Checked)


def _mutated(tmp_path, change) -> tuple:
    data = json.loads(real_files()[0].read_text())
    change(data)
    path = tmp_path / "case.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError) as full:
        read_result(path)
    with pytest.raises(ResultFileError) as view:
        read_result_view(path)
    return str(full.value), str(view.value)


@pytest.mark.parametrize("change", [
    lambda d: d.update(surprise=1),
    lambda d: d.update(status="great"),
    lambda d: d["requests"][0]["logprobs"][0][0].update(surprise=1),
    lambda d: d["requests"][0]["logprobs"][0][0].update(token_id="seven"),
    lambda d: d["checks"][0].update(evidence=[1]),  # dropped once read, but still validated
    lambda d: d.update(traces="none"),
    lambda d: d["timings"].update(total_s="slow"),
    lambda d: d["expect"].update(outcome="maybe"),
], ids=["unknown-key", "status", "logprob-key", "logprob-type", "evidence", "traces",
        "timings", "expect"])
def test_the_view_refuses_what_the_model_refuses_in_its_words(tmp_path, change):
    full, view = _mutated(tmp_path, change)
    assert view == full and "invalid result: " in view


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ResultFileError, match=r"case.json: missing"):
        read_result_view(tmp_path / "case.json")
    (tmp_path / "bin.json").write_bytes(b'{"schema_version": 1, "run_id": "\xff"}')
    with pytest.raises(ResultFileError, match=r"bin.json: not UTF-8 text \(byte 33\)"):
        read_result_view(tmp_path / "bin.json")


def test_values_only_pydantic_takes_are_taken_as_pydantic_takes_them(tmp_path):
    data = json.loads(real_files()[0].read_text())
    data["requests"][0].update(prompt_tokens=12.0, latency_s=float("nan"))
    data["requests"][0]["token_ids"][0] = str(data["requests"][0]["token_ids"][0])
    path = tmp_path / "case.json"
    path.write_text(json.dumps(data))  # NaN: a token Python's json writes, msgspec refuses
    view = read_result_view(path)
    assert isinstance(view, ResultView)
    assert view.requests[0].prompt_tokens == 12 and math.isnan(view.requests[0].latency_s)
    assert view.requests[0].token_ids == read_result(path).requests[0].token_ids
    assert view.traces == {}


def test_compare_and_ingest_read_through_the_one_reader(tmp_path, monkeypatch):
    source = real_files()[0]
    result = read_result(source)
    run = tmp_path / result.run_id
    write_result(run / result.platform / source.name, result)
    decoded, real_decoder = [], resultview._DECODER

    class Counting:
        def decode(self, raw):
            decoded.append(len(raw))
            return real_decoder.decode(raw)

    monkeypatch.setattr(resultview, "_DECODER", Counting())
    side = load_side(run, result.platform)
    assert list(side.results) == [result.case_id] and len(decoded) == 1
    batch = read_run(run)
    assert [r.case_id for r in batch.rows] == [result.case_id] and len(decoded) == 2
    # ... and a bad file reads the same to both
    bad = run / result.platform / source.name
    bad.write_text(bad.read_text().replace('"status": "', '"status": "not-', 1))
    problem = load_side(run, result.platform).problems[result.case_id].problem
    with pytest.raises(IncompleteRun) as caught:
        read_run(run)
    assert problem.startswith("invalid result: status: ")
    assert caught.value.problems == [f"{bad}: {problem}"]


def test_not_applicable_checks_keep_what_the_reports_show(tmp_path):
    result = read_result(real_files()[0])
    check = CheckResult(name="3:log_present", kind="log_present", outcome="not-applicable",
                        message="platform lacks it", evidence={"big": "x" * 1000}, decisive=True)
    path = tmp_path / "case.json"
    write_result(path, result.model_copy(update={"checks": [check]}))
    (seen,) = read_result_view(path).checks
    assert (seen.name, seen.outcome, seen.message, seen.decisive, seen.evidence) == (
        "3:log_present", "not-applicable", "platform lacks it", True, {})


def test_a_logprob_view_reads_like_the_model():
    view = msgspec.json.decode(b'{"token_id": 3, "logprob": -0.5}', type=view_of(TopLogprob))
    assert (view.token_id, view.logprob, view.token) == (3, -0.5, "")
