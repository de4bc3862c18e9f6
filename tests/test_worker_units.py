"""Worker pieces that need no engine: arg rendering, checks, results files, processes, secrets."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from harness import proc
from harness.results import (Result, ResultFileError, read_result, write_atomic, write_result)
from harness.secrets import redact
from harness.spec.case import load_case
from harness.worker.checks import Observed, evaluate
from harness.worker.engine import cli_args
from harness.worker.job import final_status
from harness.results import Expect, RequestResult, TopLogprob
from tests.conftest import CASES


def test_cli_args_render_like_vllm_flags():
    argv = cli_args({"max_model_len": 2048, "enforce_eager": True, "enable_prefix_caching": False,
                     "compilation_config": {"cudagraph_mm_encoder": True}, "seed": None})
    assert argv == ["--max-model-len", "2048", "--enforce-eager", "--no-enable-prefix-caching",
                    "--compilation-config", '{"cudagraph_mm_encoder":true}']


def _request(rid, tokens, first_lp=-0.5, ok=True, prompt=40, text_only=None, images=()):
    return RequestResult(id=rid, ok=ok, token_ids=tokens, prompt_tokens=prompt,
                         text_only_prompt_tokens=text_only, images=list(images),
                         logprobs=[[TopLogprob(token_id=t, logprob=first_lp)] for t in tokens])


def _observed(requests, log="", probes=None, traces=None, caps=(), startup=10.0):
    return Observed(capabilities=set(caps), startup_s=startup, requests=requests, log_text=log,
                    probes=probes or {}, traces=traces or {})


def test_qwen_checks_pass_and_capability_check_is_not_applicable_on_cpu():
    case = load_case(CASES / "qwen2_5_vl_vit_cudagraph.yaml")
    probes = {"act_and_mul_compile_native": {"ok": True},
              "qwen2_5_vl_vision_mlp_rocm_branch": {"ok": True}}
    requests = [_request("wide", [1, 2], prompt=103, text_only=23, images=["wide"]),
                _request("tall", [3, 4], prompt=91, text_only=23, images=["tall"]),
                _request("pair", [5], prompt=170, text_only=24, images=["square", "wide"]),
                _request("wide_other", [6, 7], prompt=103, text_only=23, images=["wide_other"])]
    checks = evaluate(case.checks, _observed(requests, probes=probes))
    outcomes = {c.kind + str(i): c.outcome for i, c in enumerate(checks)}
    assert outcomes.pop("log_present3") == "not-applicable"
    assert set(outcomes.values()) == {"passed"}
    assert [c.kind for c in checks if c.decisive] == ["log_present"]


def test_token_counts_needs_the_images_tokens_not_the_chat_template():
    # 20 prompt tokens are met by the chat template alone; the image's own tokens are not.
    case = load_case(CASES / "qwen2_5_vl_vit_cudagraph.yaml")
    [counts] = [c for c in case.checks if c.kind == "token_counts"]
    unexpanded = [_request("wide", [1], prompt=26, text_only=23, images=["wide"])]
    [result] = evaluate([counts], _observed(unexpanded))
    assert result.outcome == "failed" and "added 3 prompt tokens" in result.message
    unknown = [_request("wide", [1], prompt=103, text_only=None, images=["wide"])]
    assert evaluate([counts], _observed(unknown))[0].outcome == "failed"
    text_only = [_request("plain", [1], prompt=20, text_only=20)]
    assert evaluate([counts], _observed(text_only))[0].outcome == "passed"


def test_warmup_lines_required_on_gpu_platforms():
    case = load_case(CASES / "qwen2_5_vl_vit_cudagraph.yaml")
    log_present = [c for c in case.checks if c.kind == "log_present"]
    requests = [_request("wide", [1]), _request("tall", [2])]
    [missing] = evaluate(log_present, _observed(requests, caps={"encoder_cudagraph"}))
    assert missing.outcome == "failed" and "missing" in missing.message
    log = ("INFO EncoderCudaGraphManager initialized with paths=['a']\n"
           "INFO Encoder CUDA graph capture complete. Captured 4 graphs across 1 paths.\n")
    [found] = evaluate(log_present, _observed(requests, log=log, caps={"encoder_cudagraph"}))
    assert found.outcome == "passed"


def test_log_absent_reports_the_offending_line():
    case = load_case(CASES / "qwen2_5_vl_vit_cudagraph.yaml")
    [absent] = [c for c in case.checks if c.kind == "log_absent"]
    log = "ok\nImportError: cannot import name 'x' from 'torch._subclasses.schema_check_mode'\n"
    [result] = evaluate([absent], _observed([], log=log))
    assert result.outcome == "failed"
    assert "schema_check_mode" in json.dumps(result.evidence)


def test_outputs_differ_fails_on_identical_outputs():
    case = load_case(CASES / "qwen2_5_vl_vit_cudagraph.yaml")
    [differ] = [c for c in case.checks if c.kind == "outputs_differ"]
    same = [_request("wide", [1, 2]), _request("wide_other", [1, 2])]
    assert evaluate([differ], _observed(same))[0].outcome == "failed"
    # Same greedy tokens and slightly different logprobs: no stated margin, so no proof.
    near = [_request("wide", [1, 2]), _request("wide_other", [1, 2], first_lp=-0.7)]
    [result] = evaluate([differ], _observed(near))
    assert result.outcome == "failed"
    assert result.evidence["same_token_logprob_margin"]["wide/wide_other"] == pytest.approx(0.2)
    with_margin = differ.model_copy(update={"min_logprob_diff": 0.1})
    assert evaluate([with_margin], _observed(near))[0].outcome == "passed"
    assert evaluate([with_margin.model_copy(update={"min_logprob_diff": 0.5})],
                    _observed(near))[0].outcome == "failed"
    different = [_request("wide", [1, 2]), _request("wide_other", [1, 3])]
    assert evaluate([differ], _observed(different))[0].outcome == "passed"


def test_ragged_batch_check_needs_one_call_with_different_crop_counts():
    case = load_case(CASES / "phi4mm_variable_crop.yaml")
    [ragged] = [c for c in case.checks if c.kind == "ragged_batch"]
    ours = lambda crops: {"phase": "requests", "crop_counts": crops}  # noqa: E731
    uniform = {"phi4mm_image_batches": [ours([3, 3]), ours([5])]}
    assert evaluate([ragged], _observed([], traces=uniform))[0].outcome == "failed"
    mixed = {"phi4mm_image_batches": [ours([3, 5, 2])]}
    assert evaluate([ragged], _observed([], traces=mixed))[0].outcome == "passed"
    assert evaluate([ragged], _observed([]))[0].outcome == "failed"


def test_ragged_batch_does_not_count_vllms_profiling_call():
    # vLLM's start-up profiling runs the encoder on dummy images; only calls made while the
    # case's requests ran hold the case's images.
    case = load_case(CASES / "phi4mm_variable_crop.yaml")
    [ragged] = [c for c in case.checks if c.kind == "ragged_batch"]
    traces = {"phi4mm_image_batches": [{"phase": "startup", "crop_counts": [3, 5, 2]},
                                       {"phase": "requests", "crop_counts": [3, 3, 3]}]}
    [result] = evaluate([ragged], _observed([], traces=traces))
    assert result.outcome == "failed" and "[3, 3, 3]" in result.message


def test_failed_request_fails_requests_succeed():
    case = load_case(CASES / "phi4mm_variable_crop.yaml")
    [succeed] = [c for c in case.checks if c.kind == "requests_succeed"]
    bad = [_request("a", [1]), RequestResult(id="b", ok=False, error="HTTP 500: boom")]
    [result] = evaluate([succeed], _observed(bad))
    assert result.outcome == "failed" and result.evidence["failed"] == {"b": "HTTP 500: boom"}


@pytest.mark.parametrize("failure_class,outcome,status", [
    (None, "pass", "passed"), ("check-failed", "pass", "failed"), ("crash", "xfail", "xfailed"),
    (None, "xfail", "xpassed"), ("startup-timeout", "pass", "error"), ("oom", "xfail", "error"),
])
def test_final_status(failure_class, outcome, status):
    assert final_status(failure_class, Expect(outcome=outcome)) == status


def test_result_round_trip_and_named_errors(tmp_path):
    path = tmp_path / "run" / "cpu" / "case.json"
    result = Result(run_id="run", job_id="case@cpu", case_id="case", platform="cpu",
                    status="passed")
    write_result(path, result)
    assert read_result(path) == result
    assert not list(path.parent.glob(".*.tmp"))  # no temp file left behind
    path.write_text('{"schema_version": 1, "run_id": ')
    with pytest.raises(ResultFileError, match=rf"{path}: corrupt JSON"):
        read_result(path)
    with pytest.raises(ResultFileError, match="missing"):
        read_result(tmp_path / "absent.json")
    path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ResultFileError, match="schema_version 99"):
        read_result(path)


def test_atomic_write_leaves_old_content_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    write_atomic(path, "old")

    def broken_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_redact_removes_secret_values():
    env = {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz", "MY_API_KEY": "sekrit-value",
           "PATH": "/usr/bin"}
    text = "token=hf_abcdefghijklmnopqrstuvwxyz key=sekrit-value path=/usr/bin"
    assert redact(text, env) == "token=*** key=*** path=/usr/bin"


def _alive(pid: int) -> bool:
    """Running (a zombie awaiting its reaper counts as gone: it holds no resources)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_deadline_kills_the_whole_process_group(tmp_path):
    # The child starts a grandchild that ignores SIGTERM: both must be gone after the deadline.
    script = ("import os, signal, subprocess, sys, time\n"
              "p = subprocess.Popen([sys.executable, '-c', "
              "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "time.sleep(300)'])\n"
              "print('grandchild', p.pid, flush=True)\n"
              "time.sleep(300)\n")
    log = tmp_path / "child.log"
    began = time.monotonic()
    finished = proc.run([sys.executable, "-c", script], log, timeout_s=3, grace_s=1)
    assert finished.timed_out and finished.returncode is None
    assert time.monotonic() - began < 300  # stopped, not waited for
    pid = int(log.read_text().split()[1])
    time.sleep(0.2)
    assert not _alive(pid)


def test_run_records_exit_code_and_log(tmp_path):
    log = tmp_path / "out.log"
    finished = proc.run([sys.executable, "-c", "import sys; print('hello'); sys.exit(7)"], log,
                        timeout_s=30)
    assert finished.returncode == 7 and not finished.timed_out
    assert "hello" in proc.read_tail(log)


def test_redact_file_rewrites_only_when_a_secret_is_present(tmp_path, monkeypatch):
    from harness.secrets import redact_file

    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    log = tmp_path / "engine.log"
    log.write_text("INFO start\nenv HF_TOKEN=hf_" + "x" * 30 + "\n")
    assert redact_file(log) is True
    assert "xxxxxx" not in log.read_text() and "HF_TOKEN=***" in log.read_text()
    assert redact_file(log) is False


def test_tail_widens_to_include_the_last_traceback():
    from harness.results import tail

    frames = "\n".join(f'[rank0]:   File "x.py", line {i}, in f' for i in range(200))
    log = ("INFO early\n" * 500 + "[rank0]: Traceback (most recent call last):\n" + frames
           + "\n[rank0]: AttributeError: 'list' object has no attribute 'to'\n")
    shown = tail(log)
    assert shown.startswith("[rank0]: Traceback (most recent call last):")
    assert shown.rstrip().endswith("has no attribute 'to'")
    assert tail("a\n" * 1000).count("\n") < 60  # no traceback: just the last lines
