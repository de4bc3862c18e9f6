"""Output comparison per request, under the policy the case declares. Pure: no I/O.

Policies (``Result.compare.policy``):

- ``exact``: the generated token ids are equal, position by position and in length.
- ``logprobs_close``: vLLM's ``check_logprobs_close`` (tests/models/utils.py) semantics. Walk the
  positions both sides generated; at the first position whose tokens differ, each side's token
  must be among the other side's top-k logprobs, otherwise the outputs diverged; either way the
  comparison stops there, because after one different token the two sequences continue from
  different prefixes and nothing later is comparable. Sequences of different lengths are
  compared over the shorter one, as vLLM does (a side that stopped early generated its stop
  token at a position where the other generated something else, so that case is still caught).
  With ``all_positions``, every position before the first different token must also have the
  same set of top-k token ids: the intent vLLM's docstring gives ``always_check_logprobs``
  (its code leaves the loop after the first position, which checks almost nothing).
- ``text``: the generated texts are equal after collapsing whitespace runs and stripping.

Every policy first requires the two engines to have seen the same prompt (equal
``prompt_tokens``): with different inputs no output comparison means anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.results import RequestResult, TopLogprob

POLICIES = ("exact", "logprobs_close", "text")
DEFAULT_POLICY: dict[str, Any] = {"policy": "logprobs_close", "top_k": 5, "all_positions": False}


@dataclass(frozen=True)
class Divergence:
    """Where two outputs of one request part: a token position, or the whole request."""

    reason: str
    position: int | None = None  # token index (exact, logprobs_close) or character (text)
    baseline_token: TopLogprob | None = None
    candidate_token: TopLogprob | None = None
    baseline_top: tuple[TopLogprob, ...] = ()
    candidate_top: tuple[TopLogprob, ...] = ()
    baseline_text: str = ""
    candidate_text: str = ""
    tolerated: bool = False  # tokens differ, but the policy accepts it (logprobs_close)


@dataclass(frozen=True)
class RequestComparison:
    request_id: str
    ok: bool
    divergence: Divergence | None = None  # the first one, tolerated or not
    compared_positions: int = 0
    # Largest |logprob difference| over the token ids both sides list, at the positions
    # before the first different token: how close two agreeing engines really are.
    max_logprob_diff: float | None = None


@dataclass(frozen=True)
class OutputComparison:
    policy: str
    top_k: int
    all_positions: bool
    comparable: bool = True
    note: str = ""  # why outputs were not compared, or a policy mismatch between the sides
    requests: tuple[RequestComparison, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.comparable or all(r.ok for r in self.requests)

    @property
    def first_failure(self) -> RequestComparison | None:
        return next((r for r in self.requests if not r.ok), None)

    @property
    def max_logprob_diff(self) -> float | None:
        diffs = [r.max_logprob_diff for r in self.requests if r.max_logprob_diff is not None]
        return max(diffs) if diffs else None


def normalise_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def policy_of(compare: dict[str, Any]) -> dict[str, Any]:
    """The effective policy of a result's ``compare`` field (placeholders may leave it empty)."""
    merged = {**DEFAULT_POLICY, **{k: v for k, v in compare.items() if k in DEFAULT_POLICY}}
    if merged["policy"] not in POLICIES:
        raise ValueError(f"unknown output policy {merged['policy']!r} (known: {POLICIES})")
    return merged


def compare_outputs(baseline: list[RequestResult], candidate: list[RequestResult],
                    policy: str, top_k: int = 5, all_positions: bool = False) -> OutputComparison:
    """Compare the requests of two results by request id, in the baseline's order."""
    if policy not in POLICIES:
        raise ValueError(f"unknown output policy {policy!r} (known: {POLICIES})")
    by_id = {r.id: r for r in candidate}
    compared = []
    for request in baseline:
        other = by_id.pop(request.id, None)
        if other is None:
            compared.append(RequestComparison(request.id, False, Divergence(
                "request missing on the candidate")))
        else:
            compared.append(compare_request(request, other, policy, top_k, all_positions))
    for request_id in by_id:  # in the candidate only
        compared.append(RequestComparison(request_id, False, Divergence(
            "request missing on the baseline")))
    return OutputComparison(policy, top_k, all_positions, requests=tuple(compared))


def compare_request(a: RequestResult, b: RequestResult, policy: str, top_k: int = 5,
                    all_positions: bool = False) -> RequestComparison:
    if not a.ok or not b.ok:
        failed = " and ".join(side for side, r in (("baseline", a), ("candidate", b)) if not r.ok)
        errors = "; ".join(r.error for r in (a, b) if not r.ok and r.error)
        return RequestComparison(a.id, False, Divergence(
            f"request failed on the {failed}" + (f": {errors}" if errors else "")))
    if a.prompt_tokens is not None and b.prompt_tokens is not None \
            and a.prompt_tokens != b.prompt_tokens:
        return RequestComparison(a.id, False, Divergence(
            f"prompt lengths differ ({a.prompt_tokens} vs {b.prompt_tokens} tokens): "
            "the engines saw different inputs"))
    if policy == "text":
        return _compare_text(a, b)
    if policy == "exact":
        return _compare_exact(a, b, top_k)
    return _compare_logprobs_close(a, b, top_k, all_positions)


def _top(position: list[TopLogprob], top_k: int) -> tuple[TopLogprob, ...]:
    return tuple(sorted(position, key=lambda t: -t.logprob)[:top_k])


def _token(position: list[TopLogprob], token_id: int) -> TopLogprob:
    for alt in position:
        if alt.token_id == token_id:
            return alt
    return TopLogprob(token_id=token_id, logprob=float("nan"))


def _at(r: RequestResult, i: int) -> list[TopLogprob]:
    return r.logprobs[i] if i < len(r.logprobs) else []


def _token_divergence(a: RequestResult, b: RequestResult, i: int, top_k: int, reason: str,
                      tolerated: bool = False) -> Divergence:
    pa, pb = _at(a, i), _at(b, i)
    return Divergence(
        reason, i,
        baseline_token=_token(pa, a.token_ids[i]) if i < len(a.token_ids) else None,
        candidate_token=_token(pb, b.token_ids[i]) if i < len(b.token_ids) else None,
        baseline_top=_top(pa, top_k), candidate_top=_top(pb, top_k),
        baseline_text=a.text, candidate_text=b.text, tolerated=tolerated)


def _max_diff(a: RequestResult, b: RequestResult, upto: int) -> float | None:
    # Every position of every agreeing request passes through here: kept to one dict per
    # position and no calls per alternative.
    best: float | None = None
    for mine, theirs_at in zip(a.logprobs[:upto], b.logprobs[:upto]):
        theirs = {t.token_id: t.logprob for t in theirs_at}
        for alt in mine:
            other = theirs.get(alt.token_id)
            if other is not None:
                diff = abs(alt.logprob - other)
                if best is None or diff > best:  # as max(best, diff): NaN never replaces
                    best = diff
    return best


def _first_difference(a: list[int], b: list[int]) -> int | None:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return None
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


def _compare_exact(a: RequestResult, b: RequestResult, top_k: int) -> RequestComparison:
    i = _first_difference(a.token_ids, b.token_ids)
    if i is None and len(a.token_ids) == len(b.token_ids):
        n = len(a.token_ids)
        return RequestComparison(a.id, True, compared_positions=n,
                                 max_logprob_diff=_max_diff(a, b, n))
    if i is None:
        i = min(len(a.token_ids), len(b.token_ids))
        reason = (f"lengths differ ({len(a.token_ids)} vs {len(b.token_ids)} tokens) "
                  f"after {i} equal tokens")
    else:
        reason = f"token {a.token_ids[i]} vs {b.token_ids[i]} at position {i}"
    return RequestComparison(a.id, False, _token_divergence(a, b, i, top_k, reason),
                             compared_positions=i + 1, max_logprob_diff=_max_diff(a, b, i))


def _compare_logprobs_close(a: RequestResult, b: RequestResult, top_k: int,
                            all_positions: bool) -> RequestComparison:
    n = min(len(a.token_ids), len(b.token_ids))
    # Without all_positions, a position whose tokens agree is not looked at: only the first
    # different one can decide.
    first = _first_difference(a.token_ids, b.token_ids)
    for i in range(n) if all_positions else (() if first is None else (first,)):
        ta, tb = a.token_ids[i], b.token_ids[i]
        pa, pb = _at(a, i), _at(b, i)
        if ta != tb:
            if not pa or not pb:
                missing = "baseline" if not pa else "candidate"
                reason = f"token {ta} vs {tb} at position {i}; no logprobs on the {missing}"
                return RequestComparison(a.id, False, _token_divergence(a, b, i, top_k, reason),
                                         i + 1, _max_diff(a, b, i))
            a_in_b = any(t.token_id == ta for t in _top(pb, top_k))
            b_in_a = any(t.token_id == tb for t in _top(pa, top_k))
            if a_in_b and b_in_a:
                reason = (f"token {ta} vs {tb} at position {i}, each in the other's top-{top_k}: "
                          "tolerated; the sequences diverge from here")
                return RequestComparison(a.id, True, _token_divergence(
                    a, b, i, top_k, reason, tolerated=True), i + 1, _max_diff(a, b, i))
            which = " and ".join(
                f"{tok} not in the {side}'s top-{top_k}"
                for tok, side, inside in ((ta, "candidate", a_in_b), (tb, "baseline", b_in_a))
                if not inside)
            reason = f"token {ta} vs {tb} at position {i}: {which}"
            return RequestComparison(a.id, False, _token_divergence(a, b, i, top_k, reason),
                                     i + 1, _max_diff(a, b, i))
        if all_positions:
            ids_a = {t.token_id for t in _top(pa, top_k)}
            ids_b = {t.token_id for t in _top(pb, top_k)}
            if not pa or not pb or ids_a != ids_b:
                reason = (f"top-{top_k} token sets differ at position {i} (same token {ta})"
                          if pa and pb else f"no logprobs at position {i}")
                return RequestComparison(a.id, False, _token_divergence(a, b, i, top_k, reason),
                                         i + 1, _max_diff(a, b, i))
    return RequestComparison(a.id, True, compared_positions=n, max_logprob_diff=_max_diff(a, b, n))


def _compare_text(a: RequestResult, b: RequestResult) -> RequestComparison:
    ta, tb = normalise_text(a.text), normalise_text(b.text)
    if ta == tb:
        return RequestComparison(a.id, True, compared_positions=len(ta))
    i = next((k for k, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
    reason = f"normalised texts differ at character {i}"
    return RequestComparison(a.id, False, Divergence(
        reason, i, baseline_text=ta, candidate_text=tb), compared_positions=i + 1)
