"""`harness validate` refuses what would only fail on a GPU after a long engine start, and the
evidence a job reads is its own (stale probes logs, a reused engine's log)."""

from __future__ import annotations

import time

import pytest

from harness.spec import case as spec
from harness.commands.cli import main
from harness.spec.case import SpecError, check_registries, load_case
from harness.worker import job as job_module
from tests.conftest import CASES, REPO

QWEN = "qwen2_5_vl_vit_cudagraph.yaml"
PHI = "phi4mm_variable_crop.yaml"


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return new.splitlines()[-1].strip()


def _validate_error(capsys, path, *more) -> str:
    assert main(["validate", str(path.parent), *more]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("case,old,new,message", [
    (QWEN, "probe: act_and_mul_compile_native", "probe: act_and_mul_compile_nativ",
     "checks[5].probe: unknown probe 'act_and_mul_compile_nativ'"),
    (PHI, "traces: [phi4mm_image_batches]", "traces: [phi4mm_image_batchez]",
     "engine.traces[0]: unknown trace 'phi4mm_image_batchez'"),
    (PHI, "trace: phi4mm_image_batches", "trace: phi4mm_batches",
     "checks[2].trace: unknown trace 'phi4mm_batches'"),
    (QWEN, "tiny: qwen2_5_vl_tiny", "tiny: qwen2_5_vl_tiy", "model.tiny: unknown tiny recipe"),
    (QWEN, "requires: [encoder_cudagraph]", "requires: [encoder_cuda_graph]",
     "checks[3].requires: unknown capabilities ['encoder_cuda_graph']"),
    (QWEN, "  - kind: requests_succeed", "  - kind: ready\n    within_s: 900\n  - kind: requests_succeed",
     "checks[0].within_s: 900 is not below engine.startup_timeout_s 900: it could never fail"),
    (QWEN, "requests: [wide, wide_other]", "requests: [wide, tall]",
     "checks[4].requests: compare requests with the same prompt and images of identical sizes"),
    (QWEN, "shape: square, color: blue,\n       background: yellow, text: DOG",
     "shape: circle, color: red,\n       background: white, text: CAT",
     "compared requests have images of the same content"),
])
def test_a_typo_or_vacuous_check_fails_validate_at_its_line(cases_copy, capsys, case, old, new,
                                                           message):
    _edit(cases_copy / case, old, new)
    err = _validate_error(capsys, cases_copy / case)
    assert message in err and f"{case}:" in err


def test_traces_are_refused_in_server_mode(cases_copy, capsys):
    _edit(cases_copy / PHI, "mode: offline", "mode: server")
    err = _validate_error(capsys, cases_copy / PHI)
    assert "traces record calls inside the engine's own process: they need mode: offline" in err


def test_platform_capability_names_are_checked(cases_copy, capsys):
    _edit(cases_copy / "platforms.yaml", "capabilities: [gpu, cuda_graphs, encoder_cudagraph]",
          "capabilities: [gpu, cuda_graph, encoder_cudagraph]")
    err = _validate_error(capsys, cases_copy / "platforms.yaml")
    assert "unknown capabilities ['cuda_graph']" in err


def test_run_refuses_a_typo_before_starting_anything(cases_copy, capsys):
    _edit(cases_copy / QWEN, "probe: act_and_mul_compile_native", "probe: nope")
    assert main(["run", "--platform", "cpu", "--cases", str(cases_copy), "--dry-run"]) == 2
    assert "unknown probe 'nope'" in capsys.readouterr().err


def test_check_kinds_come_from_the_schema():
    kinds = {"ready", "requests_succeed", "log_absent", "log_present", "token_counts",
             "outputs_differ", "probe", "ragged_batch", "lora_applied"}
    assert spec._check_kinds() == kinds == spec._CHECK_KINDS


def test_the_shipped_cases_pass_the_registry_checks():
    for name in (QWEN, PHI):
        check_registries(load_case(CASES / name))


# ---------------------------------------------------------------- evidence of this attempt


def test_a_stale_probes_line_from_an_earlier_attempt_is_not_this_attempts(tmp_path):
    # A stand-in "python" that dies without printing: the probe process fails this time.
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'stand-in probe interpreter: crashed' >&2\nexit 1\n")
    python.chmod(0o755)
    log = tmp_path / "case.probes.log"
    log.write_text('HARNESS-PROBES {"act_and_mul_compile_native": {"ok": true}}\n')
    case = load_case(CASES / QWEN)
    from harness.plan import plan
    from harness.spec.case import load_platforms

    [job] = plan([case], load_platforms(CASES / "platforms.yaml"), ["cpu"])
    ctx = job_module.RunContext(tmp_path, "r1", REPO, tmp_path / "m", python=str(python))
    started = job_module.start_probes(job, log, ctx)
    probes = job_module.collect_probes(job, started, log, time.monotonic() + 60)
    assert probes["act_and_mul_compile_native"]["ok"] is False
    assert "exited 1" in probes["act_and_mul_compile_native"]["error"]


def test_a_reused_engines_log_gives_this_job_its_startup_and_its_own_part(tmp_path):
    log = tmp_path / "engine.log"
    startup = "INFO EncoderCudaGraphManager initialized\nINFO server ready\n"
    first_job = "ERROR Traceback (most recent call last): first job's request\n"
    second_job = "INFO second job's requests\n"
    log.write_text(startup + first_job + second_job)
    text = job_module.job_log_text(log, len(startup), len(startup) + len(first_job))
    assert text == startup + second_job
    assert job_module.job_log_text(log, 0, 0) == log.read_text()  # a fresh engine: all of it


def test_the_spec_knows_exactly_the_instruments_the_worker_implements():
    from harness.spec.instruments import PROBE_NAMES, TRACE_NAMES, require_same
    from harness.worker.probes import PROBES
    from harness.worker.traces import TRACES

    assert set(PROBES) == PROBE_NAMES and set(TRACES) == TRACE_NAMES
    with pytest.raises(ImportError, match=r"only implemented \['new_probe'\]"):
        require_same("probe", PROBE_NAMES, {**PROBES, "new_probe": None})
