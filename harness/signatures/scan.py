"""Classify log text by the rulebook: the first rule (in rulebook order) that matches any line
not ignored, in the sources it reads; its first matching line gives the captures.

One combined scan per source, whatever the number of rules: the text's bytes are lowered
(ASCII only, so positions stay), and a prefilter of literal substrings finds the candidate
lines: each distinct literal that some applicable rule cannot match without
(harness.signatures.literals) is searched for with ``bytes.find`` (C, memchr speed; one
alternation regex of the same literals ran at a sixth of the speed here, benchmarks/
bench_signatures.py). Only the candidate lines are decoded, checked against the ignore list and
tried against the rules' own regexes, in rule order. A log of hundreds of megabytes has a handful
of candidate lines, so no rule's regex sees the rest. ``naive_classify`` is the straightforward
per-rule scan of every line, kept as the reference that tests and the benchmark compare with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from harness.signatures.rulebook import Rule, Rulebook

# What reads like an error: an exception's name, a traceback, a log level, a failure word.
ERROR_LINE = re.compile(r"\w(?:Error|Exception)\b|Traceback|\b(?:ERROR|FATAL|CRITICAL)\b|"
                        r"(?i:\bfail(?:ed|ure|s)?\b|\babort(?:ed|ing)?\b|\bkilled\b|"
                        r"\btimed out\b|\bnot ready\b|segmentation fault|core dumped)")
TAIL_BYTES = 65536  # where an unclassified failure's last error line is looked for
MAX_LINE = 2000  # characters of a matched line kept


@dataclass(frozen=True)
class Source:
    """Text a rule may read: a log file's bytes or the harness's message, with its scope."""

    name: str  # the log file's name, or "message"
    scope: str  # one of rulebook.SCOPES
    data: bytes


@dataclass(frozen=True)
class Match:
    rule: Rule
    captures: dict[str, str]
    line: str
    line_no: int  # 1-based, in its source
    source: str

    @property
    def key(self) -> str:
        return group_key(self.captures)


def group_key(captures: dict[str, str]) -> str:
    """The grouping key of a match: its captures, sorted by name."""
    return " ".join(f"{name}={value}" for name, value in sorted(captures.items()))


@dataclass
class _Scope:
    rules: list[Rule]
    literals: list[bytes]  # distinct, lower case; one of them is on every line a rule matches
    min_index: int = field(init=False)

    def __post_init__(self) -> None:
        self.min_index = min((r.index for r in self.rules), default=0)


@lru_cache(maxsize=32)
def _scope(rulebook: Rulebook, scope: str) -> _Scope:
    rules = [r for r in rulebook.rules if scope in r.scope]
    literals = sorted({t.encode("utf-8") for r in rules for t in r.literals})
    # a literal that contains another finds nothing more than it: keep the shorter
    kept = [t for t in literals if not any(o != t and o in t for o in literals)]
    return _Scope(rules, kept)


def candidate_lines(lowered: bytes, literals: list[bytes]) -> list[int]:
    """Start offsets of the lines (sorted, distinct) that hold one of ``literals``."""
    starts = set()
    find, rfind = lowered.find, lowered.rfind
    for literal in literals:
        at = find(literal)
        while at != -1:
            starts.add(rfind(b"\n", 0, at) + 1)
            end = find(b"\n", at)
            if end == -1:
                break
            at = find(literal, end + 1)
    return sorted(starts)


def _ignored(rulebook: Rulebook, line: str) -> bool:
    return any(p.search(line) for p in rulebook.ignore)


def _captures(match: re.Match[str]) -> dict[str, str]:
    return {k: v for k, v in match.groupdict().items() if v is not None}


def scan_source(rulebook: Rulebook, source: Source, below: int | None = None) -> Match | None:
    """The match of the first rule (index below ``below``) in one source, by one scan."""
    scope = _scope(rulebook, source.scope)
    limit = len(rulebook.rules) if below is None else below
    if not scope.rules or scope.min_index >= limit:
        return None
    data = source.data
    lowered = data.lower()
    best: Match | None = None
    line_no, counted_to = 1, 0
    for start in candidate_lines(lowered, scope.literals):
        end = lowered.find(b"\n", start)
        end = len(lowered) if end == -1 else end
        line_no += lowered.count(b"\n", counted_to, start)
        counted_to = start
        line = data[start:end].decode("utf-8", errors="replace").rstrip("\r")
        if _ignored(rulebook, line):
            continue
        for rule in scope.rules:
            if rule.index >= limit:
                break
            found = rule.regex.search(line)
            if found:
                best = Match(rule, _captures(found), line[:MAX_LINE], line_no, source.name)
                limit = rule.index
                break
        if best is not None and limit <= scope.min_index:
            break  # nothing earlier can match in this source
    return best


def classify(rulebook: Rulebook, sources: list[Source]) -> Match | None:
    """The first rule matching any source (a tie in rule order: the earlier source)."""
    best: Match | None = None
    for source in sources:
        found = scan_source(rulebook, source, None if best is None else best.rule.index)
        if found is not None:
            best = found
    return best


def log_class(text: str, scope: str = "engine") -> str | None:
    """The failure class the rulebook in use gives one log's text (None: no rule matches)."""
    from harness.signatures.rulebook import default_rulebook

    found = classify(default_rulebook(), [Source("log", scope, text.encode("utf-8", "replace"))])
    return None if found is None else found.rule.failure_class


def naive_classify(rulebook: Rulebook, sources: list[Source]) -> Match | None:
    """The same answer by the obvious method: each rule, in order, over every line."""
    # lines end at "\n" only (as line numbers count them: \r, \f and \x1c-\x1e end no line)
    texts = [(s, s.data.decode("utf-8", errors="replace").split("\n")) for s in sources]
    for rule in rulebook.rules:
        for source, lines in texts:
            if source.scope not in rule.scope:
                continue
            for number, line in enumerate(lines, start=1):
                line = line.rstrip("\r")
                found = rule.regex.search(line)
                if found and not _ignored(rulebook, line):
                    return Match(rule, _captures(found), line[:MAX_LINE], number, source.name)
    return None


def last_error_line(rulebook: Rulebook, sources: list[Source]) -> tuple[str, int, str] | None:
    """(line, line number, source) of the last line that reads like an error, looked for in
    each source's tail in turn; None when no source has one."""
    for source in sources:
        data = source.data
        cut = max(0, len(data) - TAIL_BYTES)
        first_line = data.count(b"\n", 0, cut) + 1
        lines = data[cut:].decode("utf-8", errors="replace").split("\n")
        if cut:  # the first line of the tail is most likely cut in the middle
            lines, first_line = lines[1:], first_line + 1
        for offset in range(len(lines) - 1, -1, -1):
            line = lines[offset].strip()
            if line and ERROR_LINE.search(line) and not _ignored(rulebook, line):
                return line[:MAX_LINE], first_line + offset, source.name
    return None


_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-f]{12,}\b|\d+(?:\.\d+)?")


def normalized(line: str) -> str:
    """An unclassified line as a grouping key: numbers, addresses and ids made alike."""
    return _VOLATILE.sub("N", line)[:300]
