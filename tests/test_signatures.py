"""The rulebook (signatures.yaml): validation, each seed rule's fixture, rule order, the one
combined scan against the naive per-rule scan, and the signature a failed result carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results import Result
from harness.signatures.attach import sign, signature_of, where_of
from harness.signatures.literals import required_literals
from harness.signatures.rulebook import (RULES_FILE, UNCLASSIFIED, load_rulebook,
                                         parse_rulebook)
from harness.signatures.scan import (Source, classify, last_error_line, naive_classify,
                                     normalized)
from harness.spec.yamlsource import SpecError, load_located

RULEBOOK = load_rulebook(RULES_FILE)
SEED = [rule.name for rule in RULEBOOK.rules]


def sources(text: str, scope: str = "engine") -> list[Source]:
    return [Source("test.log", scope, text.encode("utf-8"))]


@pytest.mark.parametrize("name", SEED)
def test_each_seed_rule_matches_its_fixture_first(name):
    rule = RULEBOOK.rule(name)
    assert rule.source, f"{name}: cite where its fixture comes from"
    for scope in rule.scope:
        found = classify(RULEBOOK, sources(rule.fixture, scope))
        assert found is not None and found.rule.name == name, (scope, found)
        assert naive_classify(RULEBOOK, sources(rule.fixture, scope)).rule.name == name
        # and no earlier rule that reads the same text matches any line of it
        for earlier in RULEBOOK.rules[:rule.index]:
            if not set(earlier.scope) & set(rule.scope):
                continue
            assert not any(earlier.regex.search(line) for line in rule.fixture.splitlines()), \
                f"{earlier.name} also matches {name}'s fixture"


def test_the_seed_rules_cover_what_rocm_prints():
    expected = {"rocm-memory-access-fault", "rocm-gpu-hang", "hsa-status-error",
                "gpu-out-of-memory", "vllm-free-memory-precheck", "aiter-jit-build-failed",
                "collective-watchdog-timeout", "hub-http-error", "hub-repository-error",
                "encoder-cudagraph-schema-check-mode", "phi4mm-ragged-image-mask"}
    assert expected <= set(SEED)
    order = SEED.index
    assert order("rocm-memory-access-fault") < order("rocm-gpu-hang") < order("hsa-status-error")
    assert order("rocm-gpu-hang") < order("collective-watchdog-timeout")
    assert order("gpu-out-of-memory") < order("host-out-of-memory")


def test_a_fault_and_the_hang_it_causes_is_classed_by_the_fault():
    log = "\n".join([
        "(EngineCore_DP0 pid=84) INFO 10-24 19:46:08 [gpu_model_runner.py:2602] Model loading took 7.2 GiB",
        "HW Exception by GPU node-2 (Agent handle: 0x5a1c2e0) reason :GPU Hang",  # a second rank
        "Memory access fault by GPU node-2 (Agent handle: 0x5640a8bb1980) on address "
        "0x7feea09c5000. Reason: Page not present or supervisor privilege.",
        "HW Exception by GPU node-2 (Agent handle: 0x1ebc04e0) reason :GPU Hang",
        "[rank1]:[E ProcessGroupNCCL.cpp:563] [Rank 1] Watchdog caught collective operation "
        "timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE, NumelIn=1572864, NumelOut=1572864, "
        "Timeout(ms)=600000) ran for 600021 milliseconds before timing out."])
    found = classify(RULEBOOK, sources(log))
    assert found.rule.name == "rocm-memory-access-fault"
    assert found.captures == {"reason": "Page not present or supervisor privilege"}
    assert found.line_no == 3 and found.key == "reason=Page not present or supervisor privilege"
    assert naive_classify(RULEBOOK, sources(log)) == found


def test_the_combined_scan_agrees_with_the_naive_scan_on_a_big_log():
    noise = "".join(f"(Worker pid={i}) INFO 10-24 19:46:08 [runner.py:{i}] step {i} ok\n"
                    for i in range(20000))
    log = noise + "ERROR torch.OutOfMemoryError: HIP out of memory. Tried to allocate 2.00 GiB\n" \
        + noise + "non-default args: {'model': 'out of memory'}\n"
    found = classify(RULEBOOK, sources(log))
    assert found == naive_classify(RULEBOOK, sources(log))
    assert (found.rule.name, found.line_no) == ("gpu-out-of-memory", 20001)
    # the ignored line (vLLM echoing its arguments) matches no rule
    assert classify(RULEBOOK, sources(noise + "non-default args: {'x': 'out of memory'}\n")) is None


def test_scopes_keep_the_harness_words_apart_from_logs():
    assert classify(RULEBOOK, sources("server not ready within 5 s", "engine")) is None
    assert classify(RULEBOOK, sources("server not ready within 5 s", "harness")).rule.name \
        == "engine-startup-timeout"


def test_literals_are_read_off_the_patterns():
    assert required_literals(r"Memory access fault by GPU node-\d+") == [
        "memory access fault by gpu node-"]
    assert required_literals(r"(?i)foo bar|Baz qux") == ["baz qux", "foo bar"]
    assert required_literals(r"\d+|x") is None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "signatures.yaml"
    path.write_text(text)
    return path


GOOD_RULE = """rules:
  - name: one
    pattern: 'HW Exception by GPU node'
    class: gpu-hang
    fixture: HW Exception by GPU node-1
"""


@pytest.mark.parametrize("text,where,message", [
    (GOOD_RULE.replace("'HW Exception by GPU node'", "'HW (Exception'"), ":3: rules[0].pattern:",
     "bad regular expression 'HW (Exception'"),
    (GOOD_RULE.replace("gpu-hang", "gpu-melt"), ":4: rules[0].class:", "'gpu-melt' is not a failure class"),
    (GOOD_RULE.replace("    fixture: HW Exception by GPU node-1\n", ""), ":2: rules[0]:", "missing key 'fixture'"),
    (GOOD_RULE + "    colour: red\n", ":6: rules[0].colour:", "unknown key"),
    (GOOD_RULE.replace("'HW Exception by GPU node'", "'(HW) Exception'"), ":3: rules[0].pattern:",
     "capture groups must be named"),
    (GOOD_RULE.replace("'HW Exception by GPU node'", "'\\d+ x'"), ":3: rules[0].pattern:",
     "name it in `literals`"),
    (GOOD_RULE + GOOD_RULE.replace("rules:\n", ""), ":6: rules[1].name:", "duplicate rule name 'one'"),
    ("ignore: ['(']\n" + GOOD_RULE, ":1: ignore[0]:", "bad regular expression '('"),
])
def test_a_bad_rulebook_is_one_line_with_file_line_and_key(tmp_path, text, where, message):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as raised:
        load_rulebook(path)
    line = str(raised.value)
    assert "\n" not in line and line.startswith(f"{path}{where}") and message in line, line


def test_a_good_small_rulebook_loads(tmp_path):
    book = parse_rulebook(load_located(write(tmp_path, GOOD_RULE)))
    assert [r.name for r in book.rules] == ["one"] and book.rules[0].literals == (
        "hw exception by gpu node",)


# ---------------------------------------------------------------- a result's signature

def failed_result(**changes) -> Result:
    base = dict(run_id="r", job_id="c@rocm", case_id="c", platform="rocm", status="error",
                failure_class="gpu-hang", message="worker aborted (exit 134): GPU hang",
                log={"path": "c.log", "tail": ""},
                fingerprint={"hostname": "mi300-07", "gpu_arch": "gfx942",
                             "device": "8x AMD Instinct MI300X", "image_digest": "sha256:ab",
                             "gpu_env": {"HIP_VISIBLE_DEVICES": "3"},
                             "buildkite": {"agent_name": "amd-mi300-07-3"}})
    return Result(**{**base, **changes})


def test_a_failed_result_carries_its_signature_and_where_it_ran(tmp_path):
    (tmp_path / "c.log").write_text("loading\nHW Exception by GPU node-3 (Agent handle: 0x1) "
                                    "reason :GPU Hang\n")
    (tmp_path / "worker.log").write_text("worker ran\n")
    signed = sign(failed_result(), tmp_path, tmp_path / "worker.log")
    sig = signed.signature
    assert (sig.rule, sig.failure_class, sig.key, sig.line_no, sig.source) == (
        "rocm-gpu-hang", "gpu-hang", "reason=GPU Hang", 2, "c.log")
    assert sig.where.model_dump() == {
        "agent": "amd-mi300-07-3", "hostname": "mi300-07", "gpu_arch": "gfx942",
        "device": "8x AMD Instinct MI300X HIP_VISIBLE_DEVICES=3", "image_digest": "sha256:ab"}
    passed = failed_result(status="passed", failure_class=None)
    assert sign(passed, tmp_path, tmp_path / "worker.log") is passed  # passes carry none


def test_an_unmatched_failure_is_unclassified_with_its_last_error_line(tmp_path):
    (tmp_path / "c.log").write_text("start\nRuntimeError: shape mismatch at dim 3\nexiting\n")
    signed = sign(failed_result(message="engine exited 1"), tmp_path, None)
    sig = signed.signature
    assert (sig.rule, sig.line, sig.line_no, sig.source) == (
        UNCLASSIFIED, "RuntimeError: shape mismatch at dim 3", 2, "c.log")
    assert sig.key == normalized(sig.line) == "RuntimeError: shape mismatch at dim N"


def test_the_jobs_own_logs_come_before_the_shared_worker_log(tmp_path):
    own = sources("RuntimeError: nothing known", "engine")
    shared = sources("HW Exception by GPU node-1 (Agent handle: 0x1) reason :GPU Hang", "worker")
    where = where_of(failed_result())
    assert signature_of(own, shared, where, RULEBOOK).rule == "rocm-gpu-hang"
    own = sources("torch.OutOfMemoryError: HIP out of memory. Tried to allocate 2 GiB")
    assert signature_of(own, shared, where, RULEBOOK).rule == "gpu-out-of-memory"


def test_without_an_error_line_the_harness_message_is_the_line(tmp_path):
    (tmp_path / "c.log").write_text("INFO all fine\n")
    signed = sign(failed_result(status="failed", failure_class="check-failed",
                                message="outputs_differ: identical generated tokens"),
                  tmp_path, None)
    assert (signed.signature.rule, signed.signature.line, signed.signature.source) == (
        UNCLASSIFIED, "outputs_differ: identical generated tokens", "message")


# ---------------------------------------------------------------- harness signatures test

def test_signatures_test_checks_every_fixture_and_reports_coverage(tmp_path, capsys):
    from harness.commands.cli import main
    from harness.results import write_result

    platform_dir = tmp_path / "run" / "rocm"
    platform_dir.mkdir(parents=True)
    (platform_dir / "worker.log").write_text("worker\n")
    (platform_dir / "c.log").write_text("HW Exception by GPU node-1 (Agent handle: 0x2) "
                                        "reason :GPU Hang\n")
    (platform_dir / "d.log").write_text("RuntimeError: something new\n")
    write_result(platform_dir / "c.json", failed_result())
    write_result(platform_dir / "d.json", failed_result(case_id="d", job_id="d@rocm",
                                                        log={"path": "d.log", "tail": ""},
                                                        message="engine exited 1"))
    write_result(platform_dir / "e.json", failed_result(case_id="e", job_id="e@rocm",
                                                        status="passed", failure_class=None))
    assert main(["signatures", "test", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"fixtures: {len(SEED)} of {len(SEED)} matched by their own rule first" in out
    assert "coverage: 1 of 2 failed jobs classified (50%)" in out
    assert "unclassified: " in out and "RuntimeError: something new" in out


def test_signatures_test_fails_on_a_fixture_an_earlier_rule_takes(tmp_path, capsys):
    from harness.commands.cli import main

    path = write(tmp_path, GOOD_RULE + """  - name: two
    pattern: 'HW Exception by GPU node-\\d+'
    class: gpu-hang
    fixture: HW Exception by GPU node-2
""")
    assert main(["signatures", "test", "--rules", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {path}:6: two: fixture (engine) matched by one" in out


def test_a_bad_rulebook_stops_harness_run_before_anything_starts(tmp_path, capsys, monkeypatch):
    from harness.commands.cli import main

    monkeypatch.setenv("HARNESS_SIGNATURES", str(write(tmp_path, "rules: [1]\n")))
    assert main(["run", "--platform", "cpu", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "signatures.yaml:1: rules[0]: expected a mapping" in err


def test_the_combined_scan_agrees_with_the_naive_scan_on_every_pair_of_fixtures():
    for first in RULEBOOK.rules:
        for second in RULEBOOK.rules:
            for scope in ("engine", "harness", "container"):
                text = f"INFO start\n{first.fixture}\nINFO between\n{second.fixture}\n"
                assert classify(RULEBOOK, sources(text, scope)) == naive_classify(
                    RULEBOOK, sources(text, scope)), (first.name, second.name, scope)


def test_line_numbers_count_newlines_only():
    text = "progress 10%\rprogress 100%\nform\x0cfeed\nHW Exception by GPU node-1 (Agent " \
           "handle: 0x1) reason :GPU Hang\r\n"
    found = classify(RULEBOOK, sources(text))
    assert found.line_no == 3 and not found.line.endswith("\r")
    assert naive_classify(RULEBOOK, sources(text)) == found
    unknown = "a\rb\nRuntimeError: x\n"
    assert last_error_line(RULEBOOK, sources(unknown)) == ("RuntimeError: x", 2, "test.log")
