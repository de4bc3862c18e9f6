"""pytest's JUnit XML as per-node results (harness.results.TestNode). Pure: bytes in.

A vllm_tests job runs vLLM's tests with ``pytest --junitxml -o junit_family=xunit1``; xunit1
gives each testcase the ``file`` it came from, which turns pytest's mangled ``classname``
(``tests.model_executor.test_x.TestY``) back into the node id (``tests/model_executor/
test_x.py::TestY::test_z[p]``). A report without ``file`` (xunit2, another CI's) is resolved
against the tree: the longest dotted prefix of ``classname`` that is a file there is the module.

Outcomes: ``failure`` -> failed, ``error`` -> error (setup/teardown or collection), ``skipped``
-> skipped with its reason, or xfailed (``type="pytest.xfail"``); a node with both a pass and
a teardown error is an error. The exception class is what starts pytest's one-line message
(``AssertionError: assert 1 == 2``, ``failed on setup with "ValueError: bad"``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

from harness.results import TestNode

MESSAGE_CHARS = 300
_SETUP = re.compile(r'^failed on (?:setup|teardown|call) with "(.*)"?$', re.S)
_EXC = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
# pytest's own prefixes that name no exception class.
_NOT_CLASSES = frozenset({"assert", "failed", "collection", "ERROR", "Failed"})


class JunitError(Exception):
    pass


def exception_class(message: str) -> str:
    """``AssertionError: assert 1 == 2`` -> ``AssertionError``; '' when none is named."""
    text = message.strip()
    setup = _SETUP.match(text)
    if setup:
        text = setup.group(1).rstrip('"')
    match = _EXC.match(text)
    if not match or match.group(1) in _NOT_CLASSES:
        return "AssertionError" if text.startswith("assert ") else ""
    return match.group(1)


def first_line(message: str) -> str:
    line = next((part for part in message.strip().splitlines() if part.strip()), "")
    return line[:MESSAGE_CHARS]


def node_id(classname: str, name: str, file: str | None,
            exists: Callable[[str], bool] | None = None) -> str:
    """pytest's node id of a JUnit testcase (see the module docstring)."""
    if not classname:  # a collection error: pytest names the file's module in `name`
        module = name
        path = file or _module_path(module, exists)
        return path
    if file and file.endswith(".py"):
        module = file[:-3].replace("/", ".")
        if classname == module or classname.startswith(module + "."):
            rest = classname[len(module) + 1:]
            return "::".join([file, *filter(None, rest.split(".")), name])
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if exists is None or exists(path):
            return "::".join([path, *parts[cut:], name])
    return "::".join([classname.replace(".", "/") + ".py", name])


def _module_path(module: str, exists: Callable[[str], bool] | None) -> str:
    path = module.replace(".", "/")
    if exists is not None and exists(path) and not exists(path + ".py"):
        return path  # a package directory
    return path + ".py"


def parse_junit(raw: bytes, tree: Path | None = None) -> list[TestNode]:
    """Every testcase of a JUnit report, in report order (a node seen twice: its worst)."""
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise JunitError(f"not JUnit XML: {exc}") from None
    exists = (lambda rel: (tree / rel).exists()) if tree is not None else None
    nodes: dict[str, TestNode] = {}
    for case in root.iter("testcase"):
        nid = node_id(case.get("classname", ""), case.get("name", ""), case.get("file"), exists)
        node = _node(nid, case)
        seen = nodes.get(nid)
        if seen is None or _RANK[node.outcome] > _RANK[seen.outcome]:
            nodes[nid] = node
    return list(nodes.values())


_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "failed": 2, "error": 3}


def _node(nid: str, case: ET.Element) -> TestNode:
    try:
        duration = float(case.get("time") or 0.0)
    except ValueError:
        duration = 0.0
    for tag, outcome in (("error", "error"), ("failure", "failed")):
        found = case.find(tag)
        if found is not None:
            message = found.get("message") or (found.text or "")
            exception = exception_class(message) or _raised_in(found.text or "")
            if exception and not message.startswith(exception) and _raised_line(found.text):
                message = _raised_line(found.text)  # "collection failure": say what failed
            return TestNode(nid, outcome, duration, exception, first_line(message))
    skipped = case.find("skipped")
    if skipped is not None:
        reason = first_line(skipped.get("message") or skipped.text or "")
        if skipped.get("type") == "pytest.xfail":
            return TestNode(nid, "xfailed", duration, skip_reason=reason)
        return TestNode(nid, "skipped", duration, skip_reason=_skip_reason(reason))
    return TestNode(nid, "passed", duration)


_RAISED = re.compile(r"^E\s+(([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)):.*)$", re.M)


def _raised_line(text: str | None) -> str:
    """The last ``E   SomeError: ...`` line of pytest's traceback text, or ''."""
    found = _RAISED.findall(text or "")
    return found[-1][0] if found else ""


def _raised_in(text: str) -> str:
    found = _RAISED.findall(text)
    return found[-1][1] if found else ""


def _skip_reason(reason: str) -> str:
    """pytest writes ``Skipped: why`` for pytest.skip() in a test; the reason is ``why``."""
    return reason.removeprefix("Skipped: ")
