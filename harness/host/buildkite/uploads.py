"""Pipeline documents as Buildkite takes them: split into uploads, checked, rendered. Pure.

Buildkite rejects an upload of more than 500 jobs (parallel jobs counted one by one), a step key
that looks like a UUID, a ``depends_on`` naming a step not yet uploaded; and it expands ``$VAR``
in the YAML at upload time. These checks make such a pipeline an error here, before any upload.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator, Mapping, Sequence

import yaml

MAX_JOBS_PER_UPLOAD = 500
UPLOAD_TIME_VARS = frozenset({"BUILDKITE_BUILD_NUMBER"})  # the same in every job of a build
_UUID_RE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
_KEY_RE = re.compile(r"[a-zA-Z0-9_\-:.]{1,100}")


class PipelineError(ValueError):
    """The requested pipeline cannot be built (names the step, key or option at fault)."""


def job_count(step: Mapping[str, Any]) -> int:
    return int(step.get("parallelism", 1))


def split_uploads(steps: Sequence[dict[str, Any]], limit: int,
                  chain: Callable[[int, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """Pipeline documents of at most ``limit`` jobs each.

    ``steps`` are in dependency order. Every part but the last ends with ``chain(next, count)``,
    a step that uploads the next part, so the parts arrive in order and a ``depends_on`` always
    names a step uploaded before or with it.
    """
    if limit < 2:
        raise PipelineError(f"--max-jobs-per-upload must be at least 2, got {limit}")
    for step in steps:
        if job_count(step) > limit - 1:
            raise PipelineError(f"step {step['key']} has {job_count(step)} jobs; one upload takes "
                                f"at most {limit}, one kept for chaining: lower --parallelism")
    if sum(job_count(step) for step in steps) <= limit:
        return [{"steps": list(steps)}]
    chunks: list[list[dict[str, Any]]] = [[]]
    load = 0
    for step in steps:  # one job per part is kept for the step that uploads the next part
        if load + job_count(step) > limit - 1:
            chunks.append([])
            load = 0
        chunks[-1].append(step)
        load += job_count(step)
    count = len(chunks)
    return [{"steps": chunk + ([chain(i + 2, count)] if i + 1 < count else [])}
            for i, chunk in enumerate(chunks)]


def check_documents(documents: Sequence[Mapping[str, Any]], limit: int) -> None:
    """Job count per upload, unique well-formed keys, dependencies already uploaded, ``$``."""
    uploaded: set[str] = set()
    for number, document in enumerate(documents, 1):
        jobs = sum(job_count(step) for step in document["steps"])
        if jobs > limit:
            raise PipelineError(f"part {number} has {jobs} jobs, more than {limit}")
        for step in document["steps"]:
            check_key(step["key"])
            if step["key"] in uploaded:
                raise PipelineError(f"step key {step['key']!r} is used twice")
            uploaded.add(step["key"])
        for step in document["steps"]:
            for dependency in _dependencies(step):
                if dependency not in uploaded:
                    raise PipelineError(f"step {step['key']} depends on {dependency!r}, which is "
                                        f"not uploaded before or with part {number}")
        check_interpolation(document)


def check_key(key: str) -> None:
    """Buildkite keys: 1-100 of [a-zA-Z0-9_-:.], unique, and never UUID-like (rejected)."""
    if not _KEY_RE.fullmatch(key):
        raise PipelineError(f"step key {key!r} must be 1-100 characters of a-z A-Z 0-9 _ - : .")
    if _UUID_RE.search(key):
        raise PipelineError(f"step key {key!r} looks like a UUID, which Buildkite rejects")


def _dependencies(step: Mapping[str, Any]) -> Iterator[str]:
    depends = step.get("depends_on") or []
    for item in [depends] if isinstance(depends, str) else depends:
        yield item if isinstance(item, str) else item["step"]


_DOLLAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$")


def check_interpolation(document: Any, where: str = "") -> None:
    """Only ``UPLOAD_TIME_VARS`` may be expanded at upload; every other ``$`` must be ``$$``."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            check_interpolation(value, f"{where}.{key}" if where else str(key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            check_interpolation(value, f"{where}[{index}]")
    elif isinstance(document, str):
        for match in _DOLLAR_RE.finditer(document):
            name = match.group(1) or match.group(2)
            if match.group(0) != "$$" and name not in UPLOAD_TIME_VARS:
                raise PipelineError(f"{where}: {match.group(0)!r} would be expanded when the "
                                    f"pipeline is uploaded; escape it as $$: {document!r}")


# ---------------------------------------------------------------- rendering


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def render(document: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """YAML text for one upload, as ``buildkite-agent pipeline upload`` reads it."""
    comments = "".join(f"# {line}\n" for line in header)
    return comments + yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False,
                                default_flow_style=False, width=1_000_000, allow_unicode=True)
