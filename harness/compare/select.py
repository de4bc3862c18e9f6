"""Which platforms to compare, from the command line and what the run directories hold. Pure.

One run directory: one baseline platform against one or more candidates of the same run.
Defaults: the baseline is ``cuda`` if the run has it, else the reference ``hf``; the candidates
are every other platform (the reference excluded). Two run directories: the baseline comes from
the first, the candidates from the second; with no platform named, every platform the two runs
share is compared with itself (last night's rocm against today's rocm, and so on).
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE = "hf"
DEFAULT_BASELINES = ("cuda", REFERENCE)


class SelectionError(ValueError):
    """The command line asks for a comparison the run directories cannot give (exit 2)."""


@dataclass(frozen=True)
class Selection:
    pairs: tuple[tuple[str, str], ...]  # (baseline platform, candidate platform)
    reference: tuple[int, str] | None = None  # (run index 0|1, platform) consulted on disputes


def select(run1: list[str], run2: list[str] | None, baseline: str | None,
           candidates: list[str] | None, reference: str | None = REFERENCE) -> Selection:
    if run2 is None:
        pairs = _single_run(run1, baseline, candidates, reference)
    else:
        pairs = _two_runs(run1, run2, baseline, candidates, reference)
    compared = {name for pair in pairs for name in pair}
    ref = None
    if reference and reference not in compared:
        for index, names in ((1, run2), (0, run1)):
            if names is not None and reference in names:
                ref = (index, reference)
                break
    return Selection(tuple(pairs), ref)


def _single_run(run1: list[str], baseline: str | None, candidates: list[str] | None,
                reference: str | None) -> list[tuple[str, str]]:
    here = ", ".join(run1) or "none"
    if baseline is None:
        baseline = next((name for name in DEFAULT_BASELINES if name in run1), None)
        if baseline is None:
            raise SelectionError(
                f"name the baseline with --baseline (platforms in the run: {here})")
    if candidates is None:
        candidates = [name for name in run1 if name not in (baseline, reference)]
        if not candidates:
            raise SelectionError(f"nothing to compare {baseline} with: name --candidate "
                                 f"(platforms in the run: {here})")
    if baseline in candidates:
        raise SelectionError(f"{baseline} is both baseline and candidate in one run; "
                             "give two run directories to compare a platform with itself")
    return [(baseline, name) for name in candidates]


def _two_runs(run1: list[str], run2: list[str], baseline: str | None,
              candidates: list[str] | None, reference: str | None) -> list[tuple[str, str]]:
    if baseline is None and candidates is None:
        shared = [name for name in run1 if name in run2 and name != reference]
        if not shared:
            raise SelectionError(
                f"the runs share no platform (first: {', '.join(run1) or 'none'}; second: "
                f"{', '.join(run2) or 'none'}): name --baseline and --candidate")
        return [(name, name) for name in shared]
    if candidates is None:
        return [(baseline, baseline)]
    if baseline is None:
        return [(name, name) for name in candidates]
    return [(baseline, name) for name in candidates]
