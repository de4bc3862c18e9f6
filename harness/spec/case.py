"""Typed, validated cases, and the loader of cases and platforms (models: harness.spec.platform).

Pydantic (v2) models with ``extra="forbid"`` and strict scalar types: an unknown key or a wrong
type is an error, and ``yamlsource`` turns pydantic's error location into ``file:line: key``.
Pydantic was chosen over dataclasses because it validates nested unions (the ``checks`` list) and
reports every error location, which is exactly what file:line:key messages need.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, Field, field_validator, model_validator

from harness.results import TRACEBACK
# Expectation and ID_RE live with the platforms (harness.spec.tests uses them without this module)
from harness.spec.platform import (CAPABILITIES, ID_RE, Expectation, Platform,  # noqa: F401
                                   PlatformsFile, Strict)
from harness.spec.quarantine import QUARANTINE_FILE, load_quarantine
from harness.spec.yamlsource import Located, SpecError, load_located, validate_model

PLATFORMS_FILE = "platforms.yaml"


# ---------------------------------------------------------------- cases


class ModelSpec(Strict):
    hub: str  # the real model id for GPU runs
    # The hub snapshot (a 40-hex commit) GPU runs use: `harness models fetch` downloads it, the
    # engine gets `--revision`, results record it, and compare keeps other snapshots apart.
    revision: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")
    # The offline recipe (harness.models) used where weights cannot be fetched. Optional: a
    # case without one runs on hub platforms and is skipped, with that reason, on tiny ones.
    tiny: str | None = None
    reference: Literal["hf", "none"] = "none"
    reference_note: str = ""

    @model_validator(mode="after")
    def _reference_needs_tiny(self) -> "ModelSpec":
        if self.reference == "hf" and not self.tiny:
            raise ValueError("reference: hf runs on the tiny recipe's weights: set `tiny`")
        return self


class LoraSpec(Strict):
    """A LoRA adapter applied to every request, as vLLM runs Phi-4-multimodal's vision LoRA.

    The engine args must enable LoRA (``enable_lora``, ``max_lora_rank``); offline requests
    carry ``LoRARequest(name, 1, <model dir>/<path>)``, server requests name the adapter
    registered with ``--lora-modules name=<model dir>/<path>``.
    """

    name: str = Field(pattern=ID_RE)
    path: str = Field(pattern=r"^[^/].*$")  # relative to the model directory (hub snapshot)


class EngineSpec(Strict):
    mode: Literal["server", "offline"] = "server"
    args: dict[str, Any] = {}
    lora: LoraSpec | None = None
    env: dict[str, str] = {}
    traces: list[str] = []  # in-engine instrumentation (offline mode), see worker.traces
    startup_timeout_s: float = Field(default=900, gt=0)
    request_timeout_s: float = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _traces_need_offline(self) -> "EngineSpec":
        if self.traces and self.mode != "offline":
            raise ValueError("traces record calls inside the engine's own process: they need "
                             "mode: offline (a server's engine runs in processes we do not patch)")
        return self


class ImageInput(Strict):
    name: str = Field(pattern=ID_RE)
    width: int = Field(default=0, ge=0, le=8192)
    height: int = Field(default=0, ge=0, le=8192)
    pattern: Literal["noise", "gradient", "checker", "stripes", "scene"] = "noise"
    seed: int = 0
    file: str | None = None  # relative to the case file
    # `scene` (harness.spec.scenes): a shape in a colour and a word, on a background: images
    # a real model must describe differently, where two noise images may read alike.
    shape: Literal["circle", "square", "triangle", "none"] = "none"
    color: str = "red"
    background: str = "white"
    text: str = Field(default="", max_length=24)

    @model_validator(mode="after")
    def _size_or_file(self) -> "ImageInput":
        if self.file is None and (self.width < 28 or self.height < 28):
            raise ValueError("give `file`, or `width` and `height` of at least 28 px")
        from harness.spec.scenes import scene_problem

        problem = scene_problem(self.pattern, self.shape, self.color, self.background, self.text)
        if problem:
            raise ValueError(problem)
        return self

    def content(self) -> tuple:
        """What makes two images' pixels differ (sizes aside)."""
        if self.pattern == "scene":
            return (self.pattern, self.shape, self.color, self.background, self.text)
        return (self.pattern, self.seed)


class Inputs(Strict):
    images: list[ImageInput] = []


class RequestSpec(Strict):
    id: str = Field(pattern=ID_RE)
    prompt: str
    images: list[str] = []
    max_tokens: int = Field(default=8, gt=0, le=4096)


class _CheckBase(Strict):
    # A check that needs a capability the platform lacks is reported "not-applicable".
    requires: list[str] = []
    description: str = ""
    # A decisive check is what the case exists to prove (e.g. encoder-cudagraph warm-up ran).
    # A job whose decisive checks all did not apply is reported "passed, not decisive".
    decisive: bool = False


class ReadyCheck(_CheckBase):
    kind: Literal["ready"]
    within_s: float = Field(gt=0)  # must be below engine.startup_timeout_s, or it cannot fail


class RequestsSucceedCheck(_CheckBase):
    kind: Literal["requests_succeed"]


class LogCheck(_CheckBase):
    kind: Literal["log_absent", "log_present"]
    patterns: list[str] = Field(min_length=1)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _no_bare_traceback(self) -> "LogCheck":
        # vLLM prints and survives tracebacks (optional-import fallbacks, autotune retries): a
        # pattern any traceback matches fails a healthy engine. Tracebacks are evidence in the
        # result (harness.worker.checks); a failure needs the regression's own signature.
        if self.kind == "log_absent":
            for pattern in self.patterns:
                if re.search(pattern, TRACEBACK + ":"):
                    raise ValueError(
                        f"{pattern!r} matches any traceback, and vLLM prints tracebacks it "
                        "survives; name the regression's own signature (tracebacks are kept "
                        "as evidence in the result)")
        return self


class TokenCountsCheck(_CheckBase):
    kind: Literal["token_counts"]
    completion_tokens: int | None = Field(default=None, gt=0)
    min_prompt_tokens: int | None = Field(default=None, gt=0)
    # Per image, at least this many prompt tokens more than the same prompt without its images
    # (the engine tokenizes the text-only twin): met only if the processor expanded the image.
    min_image_tokens: int | None = Field(default=None, gt=0)


class OutputsDifferCheck(_CheckBase):
    """Requests whose images have identical sizes and different content must generate different
    tokens (or, with ``min_logprob_diff``, differ by at least that margin in the logprob of the
    same token): a vision tower whose output is ignored fails it."""

    kind: Literal["outputs_differ"]
    requests: list[str] = Field(min_length=2)
    min_logprob_diff: float | None = Field(default=None, gt=0)


class ProbeCheck(_CheckBase):
    kind: Literal["probe"]
    probe: str


class LoraAppliedCheck(_CheckBase):
    """The engine loaded the case's LoRA adapter and every request ran with it."""

    kind: Literal["lora_applied"]


class RaggedBatchCheck(_CheckBase):
    kind: Literal["ragged_batch"]
    trace: str  # the engine trace that records per-call crop counts


Check = Annotated[
    Union[ReadyCheck, RequestsSucceedCheck, LogCheck, TokenCountsCheck, OutputsDifferCheck,
          ProbeCheck, RaggedBatchCheck, LoraAppliedCheck],
    Field(discriminator="kind"),
]


class CompareSpec(Strict):
    policy: Literal["exact", "logprobs_close", "text"] = "logprobs_close"
    top_k: int = Field(default=5, gt=0, le=20)
    all_positions: bool = False


class PlatformOverride(Strict):
    engine_args: dict[str, Any] = {}
    env: dict[str, str] = {}
    expect: Expectation | None = None
    skip: str | None = None  # reason


class Case(Strict):
    id: str = Field(default="", pattern=r"^$|" + ID_RE)
    title: str
    description: str = ""
    links: list[str] = []
    tags: list[str] = []
    model: ModelSpec
    engine: EngineSpec = EngineSpec()
    inputs: Inputs = Inputs()
    requests: list[RequestSpec] = Field(min_length=1)
    checks: list[Check] = Field(min_length=1)
    compare: CompareSpec = CompareSpec()
    platforms: dict[str, PlatformOverride] = {}
    source: str = ""  # filled in by the loader: the file the case came from

    @model_validator(mode="after")
    def _references_exist(self) -> "Case":
        images = {image.name for image in self.inputs.images}
        request_ids = [request.id for request in self.requests]
        if len(set(request_ids)) != len(request_ids):
            raise ValueError("request ids must be unique")
        for request in self.requests:
            missing = [name for name in request.images if name not in images]
            if missing:
                raise ValueError(f"request {request.id!r} names unknown images {missing}")
        for check in self.checks:
            if isinstance(check, LoraAppliedCheck) and self.engine.lora is None:
                raise ValueError("a lora_applied check needs `engine.lora`")
            if isinstance(check, OutputsDifferCheck):
                unknown = [r for r in check.requests if r not in request_ids]
                if unknown:
                    raise ValueError(f"outputs_differ names unknown requests {unknown}")
        return self


def _same_shape_other_content(check: "OutputsDifferCheck", requests: dict,
                              images: dict) -> str:
    """Different prompt lengths alone make outputs differ: compared requests must hold images of
    identical sizes (and the same prompt), differing in content only. Returns the problem."""
    compared = [requests[r] for r in check.requests]
    if not all(r.images for r in compared):
        return "outputs_differ compares requests with images"
    shapes = {(r.prompt, tuple((images[i].width, images[i].height) for i in r.images))
              for r in compared}
    if len(shapes) != 1:
        return ("compare requests with the same prompt and images of identical sizes "
                f"(different sizes alone change the output); got {sorted(shapes)}")
    if any(images[i].file for r in compared for i in r.images):
        return ""  # files: sizes are known only when read; content is the file's
    contents = {tuple(images[i].content() for i in r.images) for r in compared}
    if len(contents) != len(compared):
        return "compared requests have images of the same content"
    return ""


# ---------------------------------------------------------------- loading


def _validate(located: Located, model: type[BaseModel], extra: dict[str, Any] | None = None):
    return validate_model(located, model, extra, hidden=_is_union_tag)


def _is_union_tag(part: Any) -> bool:
    # Discriminated unions insert the tag ("probe", "log_absent") into the location.
    return isinstance(part, str) and part in _CHECK_KINDS


def _check_kinds() -> frozenset[str]:
    """Every ``kind`` the ``Check`` union accepts, read from the schema itself."""
    union = get_args(Check)[0]
    return frozenset(kind for model in get_args(union)
                     for kind in get_args(model.model_fields["kind"].annotation))


_CHECK_KINDS = _check_kinds()


def load_case(path: Path | str) -> Case:
    """An engine case, or (``kind: vllm_tests``) a harness.spec.tests.TestsCase."""
    from harness.spec.tests import KIND, TestsCase

    stem = Path(path).stem
    if not re.fullmatch(ID_RE.strip("^$"), stem, flags=re.ASCII):
        # The file name is the case id: it becomes job keys, result paths, step keys, page ids.
        raise SpecError(path, None, "id", f"file name {stem!r} is not a case id: rename the file "
                                          f"to match {ID_RE} (lower-case ASCII, digits, _ and -)")
    located = load_located(path)
    kind = located.data.get("kind") if isinstance(located.data, dict) else None
    if kind is not None and kind != KIND:
        raise located.error(("kind",), f"unknown case kind {kind!r}; known: {KIND} "
                                       "(or no `kind`: an engine case)")
    case = _validate(located, TestsCase if kind == KIND else Case)
    if case.id and case.id != stem:
        raise located.error(("id",), f"id {case.id!r} must match the file name {stem!r}")
    return case.model_copy(update={"id": stem, "source": str(path)})


def load_platforms(path: Path | str) -> dict[str, Platform]:
    located = load_located(path)
    parsed = _validate(located, PlatformsFile)
    return {name: p.model_copy(update={"name": name}) for name, p in parsed.platforms.items()}


def case_files(paths: list[Path | str]) -> list[Path]:
    """Expand directories into their case files (``*.yaml`` minus ``platforms.yaml``)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(p for p in sorted(path.glob("*.yaml"))
                       if p.name not in (PLATFORMS_FILE, QUARANTINE_FILE))
        else:
            out.append(path)
    return out


def load_cases(paths: list[Path | str]) -> list[Case]:
    cases = [load_case(p) for p in case_files(paths)]
    seen: dict[str, str] = {}
    for case in cases:
        if case.id in seen:
            raise SpecError(case.source, None, "id", f"duplicate case id (also in {seen[case.id]})")
        seen[case.id] = case.source
    return cases


def check_overrides(cases: list[Case], platforms: dict[str, Platform]) -> None:
    """Per-platform overrides must name known platforms."""
    for case in cases:
        for name in case.platforms:
            if name not in platforms:
                located = load_located(case.source)
                raise located.error(("platforms", name),
                                    f"unknown platform (known: {', '.join(sorted(platforms))})")


def check_registries(case: Case) -> None:
    """Names a case takes from registries (probes, traces, tiny recipes, capabilities) exist.
    Raises SpecError at the YAML line: a typo fails here in a second, not on a GPU."""
    from harness.models import RECIPES
    from harness.spec.instruments import PROBE_NAMES as PROBES, TRACE_NAMES as TRACES

    def fail(keypath: tuple, message: str):
        raise load_located(case.source).error(keypath, message)

    if case.model is None:  # a vllm_tests case: its node ids and expressions are validated
        return

    if case.model.tiny is not None and case.model.tiny not in RECIPES:
        fail(("model", "tiny"), f"unknown tiny recipe {case.model.tiny!r}; known: {sorted(RECIPES)}")
    for i, name in enumerate(case.engine.traces):
        if name not in TRACES:
            fail(("engine", "traces", i), f"unknown trace {name!r}; known: {sorted(TRACES)}")
    for i, check in enumerate(case.checks):
        if isinstance(check, ProbeCheck) and check.probe not in PROBES:
            fail(("checks", i, "probe"), f"unknown probe {check.probe!r}; known: {sorted(PROBES)}")
        if isinstance(check, RaggedBatchCheck):
            if check.trace not in TRACES:
                fail(("checks", i, "trace"), f"unknown trace {check.trace!r}; known: {sorted(TRACES)}")
            if check.trace not in case.engine.traces:
                fail(("checks", i, "trace"), f"trace {check.trace!r} is not in engine.traces, "
                                             "so nothing would record it")
        unknown = [c for c in check.requires if c not in CAPABILITIES]
        if unknown:
            fail(("checks", i, "requires"), f"unknown capabilities {unknown}; "
                                            f"known: {sorted(CAPABILITIES)}")
        if isinstance(check, ReadyCheck) and check.within_s >= case.engine.startup_timeout_s:
            fail(("checks", i, "within_s"), f"{check.within_s:g} is not below "
                 f"engine.startup_timeout_s {case.engine.startup_timeout_s:g}: it could never "
                 "fail (the startup timeout fires first)")
        if isinstance(check, OutputsDifferCheck):
            problem = _same_shape_other_content(
                check, {r.id: r for r in case.requests}, {im.name: im for im in case.inputs.images})
            if problem:
                fail(("checks", i, "requests"), problem)


def validate_paths(paths: list[Path | str]) -> list[SpecError]:
    """Validate case and platform files; return every error (one per file at most)."""
    errors: list[SpecError] = []
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.yaml"))
            if not found:
                errors.append(SpecError(path, None, "", "no .yaml file in this directory"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            errors.append(SpecError(path, None, "", "no such file or directory"))
    platforms: dict[str, Platform] | None = None
    cases: list[Case] = []
    for file in files:
        try:
            if file.name == PLATFORMS_FILE:
                platforms = load_platforms(file)
            elif file.name == QUARANTINE_FILE:
                load_quarantine(file)
            else:
                case = load_case(file)
                check_registries(case)
                cases.append(case)
        except SpecError as exc:
            errors.append(exc)
    if platforms is not None and not errors:
        try:
            check_overrides(cases, platforms)
        except SpecError as exc:
            errors.append(exc)
    return errors
