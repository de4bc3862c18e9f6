"""The rulebook: ``signatures.yaml`` at the repository root, ordered rules that name failures.

Each rule: ``name``, ``pattern`` (a Python regex; its named capture groups are the grouping key,
so they must never capture addresses, handles or sizes), ``class`` (a failure class of
harness.outcomes), optional ``scope`` (which logs it reads), ``link`` (a known issue),
``source`` (where its fixture comes from), ``literals`` (the prefilter, when it cannot be read
off the pattern) and ``fixture`` (a real log excerpt it must match first). ``ignore`` lists
patterns of lines dropped before any rule sees them. The first rule (in file order) that
matches anywhere in a job's logs names the job's failure: a fault is listed above the hang it
causes.

Validated like cases: every error is one line ``file:line: key: message`` (SpecError), a bad
regular expression named with the compiler's reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.outcomes import FAILURE_CLASSES
from harness.signatures.literals import MIN_LITERAL, required_literals
from harness.spec.yamlsource import Located, SpecError, load_located

RULES_FILE = Path(__file__).resolve().parents[2] / "signatures.yaml"
RULES_ENV = "HARNESS_SIGNATURES"  # another rulebook, by path (tests, a site's own rules)
# Which text a rule reads: the case's engine log, the worker's log (a local worker), the
# container's output (the worker log of a container launch), the harness's own words about
# the job (its result message: startup deadline, OOM kill, missing image).
SCOPES = ("engine", "worker", "container", "harness")
UNCLASSIFIED = "unclassified"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
_RULE_KEYS = {"name", "pattern", "class", "scope", "link", "source", "literals", "fixture",
              "description"}
_TOP_KEYS = {"version", "ignore", "rules"}


@dataclass(frozen=True)
class Rule:
    index: int
    name: str
    pattern: str
    regex: re.Pattern[str]
    failure_class: str
    scope: tuple[str, ...]
    literals: tuple[str, ...]
    fixture: str
    link: str = ""
    source: str = ""
    description: str = ""
    line: int | None = None  # where it is defined, for messages


@dataclass(frozen=True)
class Rulebook:
    path: Path
    rules: tuple[Rule, ...]
    ignore: tuple[re.Pattern[str], ...] = field(default=())

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def _text(located: Located, keypath: tuple, value: Any, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise located.error(keypath, "expected a non-empty string")
    return value


def _compile(located: Located, keypath: tuple, pattern: Any) -> re.Pattern[str]:
    pattern = _text(located, keypath, pattern)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise located.error(keypath, f"bad regular expression {pattern!r}: {exc}") from None


def _rule(located: Located, index: int, data: Any, seen: set[str]) -> Rule:
    at = ("rules", index)
    if not isinstance(data, dict):
        raise located.error(at, "expected a mapping (name, pattern, class, fixture...)")
    unknown = sorted(set(data) - _RULE_KEYS)
    if unknown:
        raise located.error(at + (unknown[0],), f"unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})")
    for key in ("name", "pattern", "class", "fixture"):
        if key not in data:
            raise located.error(at, f"missing key {key!r}")
    name = _text(located, at + ("name",), data["name"])
    if not _NAME.fullmatch(name) or name == UNCLASSIFIED:
        raise located.error(at + ("name",), f"{name!r}: lower-case letters, digits and dashes"
                            f" (not {UNCLASSIFIED!r})")
    if name in seen:
        raise located.error(at + ("name",), f"duplicate rule name {name!r}")
    regex = _compile(located, at + ("pattern",), data["pattern"])
    if regex.groups != len(regex.groupindex):
        raise located.error(at + ("pattern",), "capture groups must be named, (?P<name>...): "
                            "they are the grouping key; use (?:...) for the others")
    klass = data["class"]
    if klass not in FAILURE_CLASSES:
        raise located.error(at + ("class",), f"{klass!r} is not a failure class "
                            f"({', '.join(FAILURE_CLASSES)})")
    scope = data.get("scope", list(SCOPES))
    scope = [scope] if isinstance(scope, str) else scope
    if not isinstance(scope, list) or not scope or any(s not in SCOPES for s in scope):
        raise located.error(at + ("scope",), f"expected one or more of {', '.join(SCOPES)}")
    literals = data.get("literals")
    if literals is None:
        found = required_literals(regex.pattern)
        if found is None:
            raise located.error(at + ("pattern",), f"no literal text of {MIN_LITERAL}+ "
                                "characters that every match contains: name it in `literals`")
        literals = found
    elif not isinstance(literals, list) or not literals or any(
            not isinstance(t, str) or len(t) < MIN_LITERAL for t in literals):
        raise located.error(at + ("literals",), f"expected a list of texts of {MIN_LITERAL}+ "
                            "characters, one of which every match contains")
    fixture = _text(located, at + ("fixture",), data["fixture"])
    return Rule(index=index, name=name, pattern=regex.pattern, regex=regex,
                failure_class=klass, scope=tuple(scope),
                literals=tuple(t.lower() for t in literals), fixture=fixture,
                link=_text(located, at + ("link",), data.get("link"), required=False),
                source=_text(located, at + ("source",), data.get("source"), required=False),
                description=_text(located, at + ("description",), data.get("description"),
                                  required=False),
                line=located.line_of(at))


def parse_rulebook(located: Located) -> Rulebook:
    data = located.data
    if not isinstance(data, dict):
        raise located.error((), "expected a mapping with `rules` (and `ignore`)")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise located.error((unknown[0],), f"unknown key (allowed: {', '.join(sorted(_TOP_KEYS))})")
    if data.get("version", 1) != 1:
        raise located.error(("version",), "only version 1 is known")
    rules_data = data.get("rules")
    if not isinstance(rules_data, list) or not rules_data:
        raise located.error(("rules",), "expected a non-empty list of rules")
    ignore_data = data.get("ignore") or []
    if not isinstance(ignore_data, list):
        raise located.error(("ignore",), "expected a list of line patterns")
    ignore = tuple(_compile(located, ("ignore", i), p) for i, p in enumerate(ignore_data))
    seen: set[str] = set()
    rules = []
    for index, item in enumerate(rules_data):
        rule = _rule(located, index, item, seen)
        seen.add(rule.name)
        rules.append(rule)
    return Rulebook(located.path, tuple(rules), ignore)


def load_rulebook(path: Path | str | None = None) -> Rulebook:
    """The rulebook at ``path`` (default: $HARNESS_SIGNATURES, else signatures.yaml)."""
    return parse_rulebook(load_located(Path(path or os.environ.get(RULES_ENV) or RULES_FILE)))


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int) -> Rulebook:
    return load_rulebook(path)


def default_rulebook() -> Rulebook:
    """The rulebook in use, loaded once per process (again if the file changes)."""
    path = Path(os.environ.get(RULES_ENV) or RULES_FILE)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise SpecError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    return _cached(str(path), mtime)


def rule_links() -> dict[str, str]:
    """Each rule's known issue, by rule name, in the rulebook in use (for the reports)."""
    return {rule.name: rule.link for rule in default_rulebook().rules if rule.link}
