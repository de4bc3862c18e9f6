"""Planning: which jobs (case x platform) run, with what configuration. Pure: no I/O.

A job's id is ``<case>@<platform>``, derived from names only, so it is stable under any
reordering of YAML keys; ``config_digest`` hashes the canonical (sorted-key) effective
configuration, so it too ignores key order but changes when the configuration does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.spec.case import Case, Expectation, Platform
from harness.spec.tests import KIND, TESTS_MODEL, is_tests_case


@dataclass(frozen=True)
class Job:
    case: Case
    platform: Platform
    engine_args: dict[str, Any]
    env: dict[str, str]
    expect: Expectation
    skip_reason: str | None = None
    keywords: tuple[str, ...] = field(default=())
    # A vllm_tests job (harness.spec.tests): the pytest arguments on its platform, nodes last.
    pytest_args: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return job_id(self.case.id, self.platform.name)

    @property
    def model(self) -> str:
        """The hub id, or the tiny recipe name (resolved to a directory by the worker)."""
        if self.case.model is None:
            return TESTS_MODEL
        if self.platform.model_source == "hub":
            return self.case.model.hub
        return self.case.model.tiny or NO_TINY_MODEL

    @property
    def engine_key(self) -> str:
        """Jobs with the same engine key can share one running engine."""
        if self.case.model is None:  # vLLM's own tests start no engine of ours: none shared
            return digest({"kind": KIND, "case": self.case.id})
        return digest({"mode": self.case.engine.mode, "model": self.model,
                       "source": self.platform.model_source, "args": self.engine_args,
                       "env": self.env, "traces": self.case.engine.traces,
                       "lora": self.case.engine.lora.model_dump() if self.case.engine.lora
                       else None})

    @property
    def config_digest(self) -> str:
        return digest({"engine": self.engine_key,
                       "case": self.case.model_dump(mode="json", exclude={"source"}),
                       "platform": self.platform.model_dump(mode="json")})


NO_TINY_MODEL = "(no tiny recipe)"
NO_TINY_REASON = ("no tiny recipe (`model.tiny`): this case runs only on platforms with hub "
                  "models")


def job_id(case_id: str, platform: str) -> str:
    return f"{case_id}@{platform}"


def digest(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings (override wins); lists and scalars are replaced, not merged."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def plan_job(case: Case, platform: Platform) -> Job:
    if is_tests_case(case):
        return plan_tests_job(case, platform)
    override = case.platforms.get(platform.name)
    args = merge(platform.engine_args, case.engine.args)
    env = {**platform.env, **case.engine.env}
    expect = Expectation()
    skip = None
    if override is not None:
        args = merge(args, override.engine_args)
        env = {**env, **override.env}
        expect = override.expect or expect
        skip = override.skip
    if skip is None and platform.model_source == "tiny" and not case.model.tiny:
        skip = NO_TINY_REASON
    keywords = (case.id, platform.name, f"{case.id}[{platform.name}]", *case.tags)
    return Job(case, platform, args, env, expect, skip, keywords)


def plan_tests_job(case, platform: Platform) -> Job:
    """A vllm_tests job: the platform's environment under the case's, its pytest arguments."""
    override = case.platforms.get(platform.name)
    env = {**platform.env, **case.env, **(override.env if override else {})}
    expect = (override.expect if override else None) or Expectation()
    keywords = (case.id, platform.name, f"{case.id}[{platform.name}]", *case.tags)
    return Job(case, platform, {}, env, expect, override.skip if override else None, keywords,
               tuple(case.pytest_selection(platform.name)))


def plan(cases: list[Case], platforms: dict[str, Platform], selected: list[str],
         keyword: str | None = None) -> list[Job]:
    """Jobs for the selected platforms, in case order then platform order.

    Unknown platform names raise ValueError; ``keyword`` is a pytest ``-k`` expression,
    matched the way pytest matches it (case-insensitive substrings of the job's names), so
    ``harness plan -k`` and ``harness run -k`` select the same jobs.
    """
    unknown = [name for name in selected if name not in platforms]
    if unknown:
        raise ValueError(f"unknown platform(s) {unknown}; known: {sorted(platforms)}")
    matches = keyword_matcher(keyword)
    jobs = [plan_job(case, platforms[name]) for case in cases for name in selected]
    return [job for job in jobs if matches(job.keywords)]


def keyword_matcher(expression: str | None) -> Callable[[tuple[str, ...]], bool]:
    if not expression:
        return lambda names: True
    # pytest's own -k grammar (and/or/not/parentheses), so plan and run agree exactly.
    from _pytest.mark.expression import Expression

    try:
        compiled = Expression.compile(expression)
    except Exception as exc:  # pytest raises its own ParseError / SyntaxError types
        raise ValueError(f"bad -k expression {expression!r}: {exc}") from None

    def matches(names: tuple[str, ...]) -> bool:
        lowered = [name.lower() for name in names]
        return compiled.evaluate(
            lambda sub, **kwargs: any(sub.lower() in name for name in lowered))

    return matches
