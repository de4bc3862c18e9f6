"""The ordered candidate list: from a file (the user's commit order) or a registry's tags
(ordered by the image's own creation time), cut to the range from the good end to the bad end.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from harness.host.bisect.state import Candidate

# An image reference as docker/podman take it: [host[:port]/]path[:tag][@digest], no spaces.
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-/:@+]*")


class CandidateError(ValueError):
    """Bad candidate input; the message names the file and line, or the reference."""


def read_candidates_file(path: Path) -> list[Candidate]:
    """One image reference per line, oldest first; blank lines and ``#`` comments ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CandidateError(f"{path}: cannot read: {exc.strerror or exc}") from None
    seen: dict[str, int] = {}
    out: list[Candidate] = []
    for number, line in enumerate(lines, 1):
        ref = line.split("#", 1)[0].strip()
        if not ref:
            continue
        if not _REF.fullmatch(ref):
            raise CandidateError(f"{path}:{number}: {ref!r} is not an image reference")
        if ref in seen:
            raise CandidateError(f"{path}:{number}: {ref} already listed on line {seen[ref]}")
        seen[ref] = number
        out.append(Candidate(ref=ref))
    if not out:
        raise CandidateError(f"{path}: no candidate listed")
    return out


def tag_of(ref: str) -> str:
    """The tag of ``host:port/repo:tag`` (a colon after the last slash), else ''."""
    last = ref.rsplit("/", 1)[-1].split("@", 1)[0]
    return last.split(":", 1)[1] if ":" in last else ""


def resolve(candidates: Sequence[Candidate], ref: str, role: str) -> int:
    """Index of the candidate ``ref`` names: its full reference, its digest (``repo@sha256:..``
    as a result's fingerprint records it), or its tag alone."""
    exact = [i for i, c in enumerate(candidates) if c.ref == ref]
    if exact:
        return exact[0]
    digest = ref.rsplit("@", 1)[1] if "@" in ref else ""
    by_digest = [i for i, c in enumerate(candidates) if digest and c.digest == digest]
    if by_digest:
        return by_digest[-1]  # a digest pushed under several tags: the newest of them
    by_tag = [i for i, c in enumerate(candidates) if tag_of(c.ref) == ref]
    if len(by_tag) == 1:
        return by_tag[0]
    if by_tag:
        raise CandidateError(f"--{role} {ref}: matches several candidates; give the full reference")
    listed = ", ".join(c.ref for c in candidates[:5]) + (" ..." if len(candidates) > 5 else "")
    raise CandidateError(f"--{role} {ref}: not among the candidates ({listed})")


def cut_range(candidates: Sequence[Candidate], good: str, bad: str) -> list[Candidate]:
    """The candidates from the good end to the bad end, both included, oldest first."""
    low, high = resolve(candidates, good, "good"), resolve(candidates, bad, "bad")
    if low >= high:
        raise CandidateError(f"--good {good} must come before --bad {bad} in the candidate order "
                             f"(positions {low + 1} and {high + 1})")
    return list(candidates[low:high + 1])


def by_creation_time(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Oldest first by the image config's ``created`` (RFC 3339 in UTC); ties keep the
    registry's order. An image without a creation time cannot be placed: that is an error."""
    unknown = [c.ref for c in candidates if not c.created]
    if unknown:
        raise CandidateError(f"no creation time for {', '.join(unknown[:3])}: order the "
                             "candidates yourself with --candidates FILE")
    return sorted(candidates, key=lambda c: _normal_time(c.created))


def _normal_time(stamp: str) -> str:
    # "2026-11-30T10:00:00.123456789Z" and "...+00:00": compare on the same shape.
    stamp = stamp.replace("+00:00", "Z")
    head, _, rest = stamp.partition(".")
    fraction = rest.rstrip("Z")
    return f"{head.rstrip('Z')}.{fraction.ljust(9, '0')}"
