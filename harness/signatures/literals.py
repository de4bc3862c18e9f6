"""The literal text a regular expression cannot match without: what the one combined scan looks
for before any rule's own regex runs (harness.signatures.scan).

For a pattern, ``required_literals`` gives alternatives (lower case) such that every match of the
pattern contains at least one of them; None when no such text of ``MIN_LITERAL`` characters can
be read off the pattern (the rule must then name its ``literals`` itself). Derived from Python's
own parse of the pattern, so the prefilter cannot disagree with the regex.
"""

from __future__ import annotations


try:  # Python 3.11+
    from re import _parser as sre_parse  # type: ignore[attr-defined]
    from re import _constants as sre_constants  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

MIN_LITERAL = 4  # shorter text occurs everywhere in a log: no use as a prefilter

_LITERAL = sre_constants.LITERAL
_SUBPATTERN = sre_constants.SUBPATTERN
_BRANCH = sre_constants.BRANCH
_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)
_IN = sre_constants.IN
_POSSESSIVE = getattr(sre_constants, "POSSESSIVE_REPEAT", None)
_ATOMIC = getattr(sre_constants, "ATOMIC_GROUP", None)

Alternatives = list[str]


def _score(alternatives: Alternatives | None) -> int:
    """How selective a set of alternatives is: its shortest member's length."""
    return min((len(a) for a in alternatives), default=0) if alternatives else 0


def _best(candidates: list[Alternatives]) -> Alternatives | None:
    good = [c for c in candidates if _score(c) >= MIN_LITERAL]
    return max(good, key=_score) if good else None


def _either_case(members) -> bool:
    """A class like [Aa]: two ASCII literals that are one letter in two cases."""
    if len(members) != 2 or any(op is not _LITERAL or code >= 128 for op, code in members):
        return False
    return chr(members[0][1]).lower() == chr(members[1][1]).lower()


def _sequence(items) -> Alternatives | None:
    """The best required alternatives of a sequence of parsed items."""
    candidates: list[Alternatives] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            candidates.append(["".join(run)])
            run.clear()

    for op, arg in items:
        if op is _LITERAL and arg < 128:  # ASCII: lowered the same in text and in bytes
            run.append(chr(arg).lower())
            continue
        if op is _IN and _either_case(arg):
            run.append(chr(arg[0][1]).lower())  # [Aa]: one letter in either case
            continue
        if op is sre_constants.AT:
            continue  # ^ $ \b: match no text, break no literal run
        flush()
        if op is _SUBPATTERN:
            inner = _sequence(arg[-1])
            if inner:
                candidates.append(inner)
        elif op is _ATOMIC and _ATOMIC is not None:
            inner = _sequence(arg)
            if inner:
                candidates.append(inner)
        elif op is _BRANCH:
            branches = [_sequence(branch) for branch in arg[1]]
            if all(branches):
                candidates.append(sorted({a for b in branches for a in b}))
        elif op in _REPEATS or (_POSSESSIVE is not None and op is _POSSESSIVE):
            low, _, item = arg
            if low >= 1:
                inner = _sequence(item)
                if inner:
                    candidates.append(inner)
    flush()
    return _best(candidates)


def required_literals(pattern: str) -> Alternatives | None:
    """Lower-case texts, one of which every match of ``pattern`` contains; None if none found."""
    parsed = sre_parse.parse(pattern, 0)
    return _sequence(list(parsed))

