"""The `harness bisect ...` command line for a range: what the bisect prints to rerun itself,
and what the dashboard, the compare annotation and `harness pipeline --bisect` show. Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from harness.proc import flag_words

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
    confirm_at: str = "each"
    verify_ends: bool = True
    pull: str = "missing"
    cases: str | None = None
    platforms_file: str | None = None
    results: str | None = None
    bisect_id: str | None = None
    max_total_runs: int | None = None  # the bisect's budget, across reruns
    json_out: str | None = None

    def argv(self) -> list[str]:
        """Only what differs from the defaults, so the printed line stays short."""
        return ["bisect", "--case", self.case, "--platform", self.platform,
                "--good", self.good, "--bad", self.bad, *flag_words(
                    ("--candidates", self.candidates), ("--tags-from", self.tags_from),
                    ("--tag-pattern", self.tag_pattern),
                    ("--confirmations", self.confirmations
                     if self.confirmations != DEFAULT_CONFIRMATIONS else None),
                    ("--confirm-at", self.confirm_at if self.confirm_at != "each" else None),
                    ("--no-verify-ends", not self.verify_ends),
                    ("--pull", self.pull if self.pull != "missing" else None),
                    ("--cases", self.cases), ("--platforms-file", self.platforms_file),
                    ("--results", self.results), ("--id", self.bisect_id),
                    ("--json", self.json_out), ("--max-total-runs", self.max_total_runs))]

    def command(self, harness: str = "harness") -> str:
        return " ".join([harness, *(shlex.quote(a) for a in self.argv())])


def image_repository(ref: str) -> str | None:
    """``host/repo`` of ``host/repo:tag`` or ``host/repo@sha256:..`` (what --tags-from takes);
    None for a bare name or image id."""
    if ref.startswith("sha256:"):  # a local image id (no registry digest)
        return None
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last.split(":", 1)[1]) - 1]
    elif "@" not in ref:
        return None
    return name or None


def range_images(good_fingerprint: dict, bad_fingerprint: dict) -> tuple[str, str] | None:
    """The (good, bad) image references of two results' fingerprints: the registry digests
    when both have one (a nightly tag names a different image every night), else the tags."""
    good_digest, bad_digest = (str(fp.get("image_digest") or "")
                               for fp in (good_fingerprint, bad_fingerprint))
    if "@" in good_digest and "@" in bad_digest and good_digest != bad_digest:
        return good_digest, bad_digest
    good, bad = (str(fp.get("image") or "") for fp in (good_fingerprint, bad_fingerprint))
    return (good, bad) if good and bad and good != bad else None


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
