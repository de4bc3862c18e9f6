"""The ``vllm_tests`` case kind: upstream vLLM test node ids, run from the vLLM tree that runs.

A case file with ``kind: vllm_tests`` names node ids or paths of vLLM's own ``tests/`` tree
(``tests/model_executor/test_phi4mm_attention.py``, ``tests/x.py::test_y[param]``); the worker
runs them with pytest inside the platform and records one result per node
(harness.worker.vllm_tests). Same ``platforms:`` overrides (``skip``, ``expect``, ``env``) as
the engine cases, plus per-platform ``pytest_args``. Validated like them: an unknown key, a bad
node id or a ``-k``/``-m`` expression pytest cannot parse is ``file:line: key: message``.

Three lines make a case::

    title: Phi-4-multimodal attention (vLLM's own test)
    kind: vllm_tests
    tests: [tests/model_executor/test_phi4mm_attention.py]
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from harness.spec.platform import ID_RE, Expectation, Strict

KIND = "vllm_tests"
# The one "model" a tests job shows where engine jobs show theirs (plan, results).
TESTS_MODEL = "(vLLM's own tests)"
# A node id or path inside vLLM's tests/ tree: relative, under tests/, no "..", no spaces.
NODE_RE = r"^tests(/[A-Za-z0-9_.\-]+)*(\.py(::[^\s:][^\s]*)?)?/?$"
# pytest options the harness sets itself for every tests job: a case may not change them.
OWNED_OPTIONS = ("--junitxml", "--junit-xml", "--rootdir", "--noconftest", "-k", "-m",
                 "--confcutdir", "-c", "--override-ini", "-o", "--basetemp")


def _check_expression(expression: str | None) -> str | None:
    if expression is None:
        return None
    from _pytest.mark.expression import Expression

    try:
        Expression.compile(expression)
    except Exception as exc:  # pytest's ParseError
        raise ValueError(f"bad pytest expression {expression!r}: {exc}") from None
    return expression


def _check_args(args: list[str]) -> list[str]:
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in OWNED_OPTIONS:
            raise ValueError(f"{arg!r}: the harness sets {name} itself (use the case's "
                             "`keyword`, `markers`, `conftest` keys)")
    return args


def _node_id(node: str) -> str:
    path = node.split("::", 1)[0]
    if not re.fullmatch(NODE_RE, node) or ".." in path.split("/"):
        raise ValueError(f"{node!r} is not a node id or path under tests/ "
                         "(e.g. tests/model_executor/test_x.py::test_y)")
    return node


NodeId = Annotated[str, AfterValidator(_node_id)]


class TestsOverride(Strict):
    """Per platform: extra pytest arguments, environment, an expectation or a skip."""

    pytest_args: list[str] = []
    env: dict[str, str] = {}
    expect: Expectation | None = None
    skip: str | None = None
    # Nodes expected to fail on this platform, with the reason (and a link): their failure does
    # not fail the case, and compare shows them as `expected-failure`, not as regressions.
    xfail: dict[NodeId, str] = {}

    @field_validator("pytest_args")
    @classmethod
    def _args(cls, args: list[str]) -> list[str]:
        return _check_args(args)


class TestsCase(Strict):
    kind: Literal["vllm_tests"]
    id: str = Field(default="", pattern=r"^$|" + ID_RE)
    title: str
    description: str = ""
    links: list[str] = []
    tags: list[str] = []
    tests: list[NodeId] = Field(min_length=1)  # node ids or paths under tests/
    keyword: str | None = None  # pytest -k
    markers: str | None = None  # pytest -m
    pytest_args: list[str] = []
    # vLLM's tests/conftest.py imports test-only packages (tblib, ...) that vLLM images do not
    # carry: off (--noconftest) by default; `true` needs vLLM's test requirements installed.
    conftest: bool = False
    timeout_s: float = Field(default=1800, gt=0)
    env: dict[str, str] = {}
    platforms: dict[str, TestsOverride] = {}
    source: str = ""

    @field_validator("tests")
    @classmethod
    def _unique(cls, nodes: list[str]) -> list[str]:
        if len(set(nodes)) != len(nodes):
            raise ValueError("node ids must be unique")
        return nodes

    @field_validator("keyword", "markers")
    @classmethod
    def _expressions(cls, expression: str | None) -> str | None:
        return _check_expression(expression)

    @field_validator("pytest_args")
    @classmethod
    def _args(cls, args: list[str]) -> list[str]:
        return _check_args(args)

    # What engine cases have and a tests case does not: the planner and reports read these.
    @property
    def model(self) -> None:
        return None

    def expected_failures(self, platform: str) -> dict[str, str]:
        override = self.platforms.get(platform)
        return dict(override.xfail) if override else {}

    def pytest_selection(self, platform: str) -> list[str]:
        """The pytest arguments of this case on ``platform`` (node ids last)."""
        override = self.platforms.get(platform)
        args = [] if self.conftest else ["--noconftest"]
        if self.keyword:
            args += ["-k", self.keyword]
        if self.markers:
            args += ["-m", self.markers]
        args += self.pytest_args + (override.pytest_args if override else [])
        return args + list(self.tests)


def is_tests_case(case: Any) -> bool:
    return getattr(case, "kind", None) == KIND
