"""The `harness bisect ...` command line for a range: what the bisect prints to rerun itself,
and what the dashboard, the compare annotation and `harness pipeline --bisect` show. Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

DEFAULT_CONFIRMATIONS = 1


@dataclass(frozen=True)
class BisectRequest:
    case: str
    platform: str
    good: str
    bad: str
    candidates: str | None = None  # a file, oldest first
    tags_from: str | None = None  # REGISTRY/REPO
    tag_pattern: str | None = None
    confirmations: int = DEFAULT_CONFIRMATIONS
    verify_ends: bool = True
    cases: str | None = None
    platforms_file: str | None = None
    results: str | None = None
    bisect_id: str | None = None

    def argv(self) -> list[str]:
        out = ["bisect", "--case", self.case, "--platform", self.platform,
               "--good", self.good, "--bad", self.bad]
        if self.candidates:
            out += ["--candidates", self.candidates]
        if self.tags_from:
            out += ["--tags-from", self.tags_from]
        if self.tag_pattern:
            out += ["--tag-pattern", self.tag_pattern]
        if self.confirmations != DEFAULT_CONFIRMATIONS:
            out += ["--confirmations", str(self.confirmations)]
        if not self.verify_ends:
            out.append("--no-verify-ends")
        for flag, value in (("--cases", self.cases), ("--platforms-file", self.platforms_file),
                            ("--results", self.results), ("--id", self.bisect_id)):
            if value:
                out += [flag, value]
        return out

    def command(self, harness: str = "harness") -> str:
        return " ".join([harness, *(shlex.quote(a) for a in self.argv())])


def image_repository(ref: str) -> str | None:
    """``host/repo`` of ``host/repo:tag`` (what --tags-from takes), None without a tag."""
    last = ref.rsplit("/", 1)[-1]
    if "@" in last or ":" not in last:
        return None
    return ref[: len(ref) - len(last.split(":", 1)[1]) - 1]


def suggest(case: str, platform: str, good_image: str | None, bad_image: str | None,
            harness: str = "harness") -> str | None:
    """The bisect command for a case that passed on ``good_image`` and fails on ``bad_image``:
    the candidates are the tags of the bad image's repository. None when the range is unknown
    (no image recorded, the same image on both sides, or images of different repositories)."""
    if not good_image or not bad_image or good_image == bad_image:
        return None
    repo = image_repository(bad_image)
    if repo is None or image_repository(good_image) != repo:
        return None
    return BisectRequest(case, platform, good_image, bad_image, tags_from=repo).command(harness)
