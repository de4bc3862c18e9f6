"""The one result-file reader (harness.results.read_result): parse and validate in one step,
and for a bad file the same one-line reason, naming the file, whatever went wrong."""

from __future__ import annotations

import json

import pytest

from harness.results import Result, ResultFileError, read_result
from harness.resultview import read_result_view
from tests.test_history_data import real_run


def real_files():
    return sorted(p for p in real_run().glob("*/*.json") if not p.name.startswith("."))


def test_reads_the_committed_real_results_as_parsing_then_validating_would():
    for path in real_files():
        assert read_result(path) == Result.model_validate(json.loads(path.read_text()))


@pytest.mark.parametrize("text, problem", [
    ('{"schema_version": 1,\n "run_id": ', "corrupt JSON at line 2: Expecting value"),
    ("[1, 2]", "not a JSON object"),
    ('{"schema_version": 7}', "schema_version 7 is not 1"),
    ('{"schema_version": 1, "run_id": "r"}', "invalid result: job_id: Field required"),
])
@pytest.mark.parametrize("reader", [read_result, read_result_view])  # the same words in both
def test_a_bad_file_is_named_with_what_is_wrong(tmp_path, text, problem, reader):
    path = tmp_path / "case.json"
    path.write_text(text)
    with pytest.raises(ResultFileError) as caught:
        reader(path)
    assert str(caught.value) == f"{path}: {problem}"


def test_an_unknown_key_and_a_wrong_status_are_invalid(tmp_path):
    data = json.loads(real_files()[0].read_text())
    path = tmp_path / "case.json"
    path.write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(ResultFileError, match=r"invalid result: surprise: Extra inputs"):
        read_result(path)
    path.write_text(json.dumps({**data, "status": "great"}))
    with pytest.raises(ResultFileError, match=r"invalid result: status: Input should be"):
        read_result(path)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ResultFileError, match=r"case.json: missing"):
        read_result(tmp_path / "case.json")
    (tmp_path / "bin.json").write_bytes(b'{"schema_version": 1, "run_id": "\xff"}')
    with pytest.raises(ResultFileError, match=r"bin.json: not UTF-8 text \(byte 33\)"):
        read_result(tmp_path / "bin.json")


def test_an_unknown_key_in_a_logprob_is_invalid_too(tmp_path):
    data = json.loads(real_files()[0].read_text())
    request = next(r for r in data["requests"] if r["logprobs"])
    request["logprobs"][0][0]["surprise"] = 1
    path = tmp_path / "case.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match=r"invalid result: requests\.\d+\.logprobs\.0\.0"):
        read_result(path)


def test_cycle_collection_is_paused_while_reading_in_bulk_and_restored_after():
    import gc

    from harness.results import cycle_collection_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with cycle_collection_paused():
            assert not gc.isenabled()
            raise RuntimeError("a reader failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with cycle_collection_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
