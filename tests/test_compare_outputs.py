"""Output policies on real requests: exact, logprobs_close (vLLM's semantics), text."""

from __future__ import annotations

import pytest

from harness.compare.outputs import compare_outputs, compare_request, normalise_text, policy_of
from harness.results import TopLogprob
from tests.test_compare_data import (drop_from_top, outside_top, real_result, second_choice,
                                     swap_token)

P = 2  # the position the tests change: after a shared prefix, before the end


@pytest.fixture
def request_pair():
    request = real_result().requests[0]
    return request, request.model_copy()


def test_identical_outputs_agree_under_every_policy(request_pair):
    a, b = request_pair
    for policy in ("exact", "logprobs_close", "text"):
        compared = compare_request(a, b, policy, 5, all_positions=True)
        assert compared.ok and compared.divergence is None, policy
    assert compare_request(a, b, "exact").max_logprob_diff == 0.0


def test_swap_to_the_runner_up_is_caught_by_exact_and_tolerated_by_logprobs_close(request_pair):
    a, _ = request_pair
    runner_up = second_choice(a, P)
    b = swap_token(P, runner_up)(a)
    exact = compare_request(a, b, "exact")
    assert not exact.ok
    assert exact.divergence.position == P
    assert exact.divergence.baseline_token.token_id == a.token_ids[P]
    assert exact.divergence.candidate_token.token_id == runner_up
    assert len(exact.divergence.baseline_top) == 5 and len(exact.divergence.candidate_top) == 5
    close = compare_request(a, b, "logprobs_close", 5)
    assert close.ok
    assert close.divergence.tolerated and close.divergence.position == P
    assert "tolerated" in close.divergence.reason


def test_token_outside_the_other_top_k_is_a_divergence(request_pair):
    a, _ = request_pair
    stranger = outside_top(a, P)
    b = swap_token(P, stranger)(a)
    close = compare_request(a, b, "logprobs_close", 5)
    assert not close.ok and not close.divergence.tolerated
    assert close.divergence.position == P
    assert f"{stranger} not in the baseline's top-5" in close.divergence.reason


def test_baseline_token_missing_from_candidate_top_k_is_a_divergence(request_pair):
    a, _ = request_pair
    b = drop_from_top(P, a.token_ids[P])(swap_token(P, second_choice(a, P))(a))
    close = compare_request(a, b, "logprobs_close", 5)
    assert not close.ok
    assert f"{a.token_ids[P]} not in the candidate's top-5" in close.divergence.reason


def test_logprobs_close_stops_at_the_first_different_token(request_pair):
    # vLLM breaks out of the loop at the first mismatch: later tokens follow another prefix.
    a, _ = request_pair
    b = swap_token(P, second_choice(a, P))(a)
    b = swap_token(P + 1, outside_top(a, P + 1))(b)
    assert compare_request(a, b, "logprobs_close").ok
    assert not compare_request(a, b, "exact").ok


def test_all_positions_also_requires_equal_top_k_sets_where_tokens_agree(request_pair):
    a, _ = request_pair
    rank5 = sorted(a.logprobs[0], key=lambda alt: -alt.logprob)[4].token_id
    b = drop_from_top(0, rank5)(a)  # the same token at position 0, another 5th alternative
    rows = [list(r) for r in b.logprobs]
    rows[0].append(TopLogprob(token_id=outside_top(a, 0), logprob=rows[0][-1].logprob))
    b = b.model_copy(update={"logprobs": rows})
    assert compare_request(a, b, "logprobs_close", 5).ok
    strict = compare_request(a, b, "logprobs_close", 5, all_positions=True)
    assert not strict.ok and strict.divergence.position == 0
    assert "top-5 token sets differ" in strict.divergence.reason


def test_shorter_output_fails_exact_but_not_logprobs_close(request_pair):
    a, _ = request_pair
    b = a.model_copy(update={"token_ids": a.token_ids[:-2], "logprobs": a.logprobs[:-2]})
    exact = compare_request(a, b, "exact")
    assert not exact.ok and "lengths differ" in exact.divergence.reason
    assert exact.divergence.candidate_token is None  # the candidate's sequence had ended
    assert compare_request(a, b, "logprobs_close").ok  # vLLM compares the common prefix


def test_text_policy_normalises_whitespace(request_pair):
    a, _ = request_pair
    b = a.model_copy(update={"text": "  " + a.text.replace(" ", " \n\t ") + "\n"})
    assert compare_request(a, b, "text").ok
    changed = a.model_copy(update={"text": normalise_text(a.text) + " extra"})
    compared = compare_request(a, changed, "text")
    assert not compared.ok and compared.divergence.position == len(normalise_text(a.text))


def test_different_prompt_lengths_fail_every_policy(request_pair):
    a, _ = request_pair
    b = a.model_copy(update={"prompt_tokens": a.prompt_tokens + 1})
    for policy in ("exact", "logprobs_close", "text"):
        compared = compare_request(a, b, policy)
        assert not compared.ok and "prompt lengths differ" in compared.divergence.reason


def test_failed_or_missing_requests_are_divergences():
    result = real_result()
    broken = [r.model_copy(update={"ok": False, "error": "HTTP 500"}) if r.id == "tall" else r
              for r in result.requests]
    compared = compare_outputs(result.requests, broken, "logprobs_close")
    assert not compared.ok
    assert "request failed on the candidate: HTTP 500" in compared.first_failure.divergence.reason
    fewer = compare_outputs(result.requests, result.requests[:2], "exact")
    assert [r.request_id for r in fewer.requests if not r.ok] == ["pair"]


def test_policy_of_fills_defaults_and_rejects_unknown_policies():
    assert policy_of({}) == {"policy": "logprobs_close", "top_k": 5, "all_positions": False}
    assert policy_of({"policy": "exact", "top_k": 3})["top_k"] == 3
    with pytest.raises(ValueError, match="unknown output policy 'fuzzy'"):
        policy_of({"policy": "fuzzy"})
