"""Typed, validated platforms (``cases/platforms.yaml``): where a job runs and how vLLM starts.

Loaded through ``harness.spec.case`` (``load_platforms``), which reports errors as ``file:line: key``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# What a platform can declare and a check can require (`requires:`); one list, so a typo in
# either place is an error, not a check that silently never applies.
CAPABILITIES = frozenset({"gpu", "cuda_graphs", "encoder_cudagraph"})


ID_RE = r"^[a-z0-9][a-z0-9_\-]*$"  # case, image, request and adapter ids
# The transformers reference is written as a pseudo-platform: `hf` on CPU, `hf-<kind>` on a GPU.
REFERENCE_PLATFORM = "hf"


def reference_platform_name(device: str = "cpu") -> str:
    """'hf' on CPU, 'hf-cuda' on a GPU (any index): the results directory of the reference."""
    kind = device.split(":", 1)[0]
    return REFERENCE_PLATFORM if kind == "cpu" else f"{REFERENCE_PLATFORM}-{kind}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Expectation(Strict):
    """What a case is expected to do on a platform (its `platforms.<name>.expect`)."""

    outcome: Literal["pass", "xfail"] = "pass"
    reason: str = ""
    link: str = ""
    strict: bool = True  # an unexpected pass of a strict xfail is a failure


class BuildSpec(Strict):
    dockerfile: str
    args: dict[str, str] = {}


class Platform(Strict):
    """Where a job runs and how vLLM is started there (``cases/platforms.yaml``)."""

    name: str = ""
    description: str = ""
    launcher: Literal["local", "container"]
    accelerator: Literal["rocm", "cuda", "cpu"]
    # Container platforms: engine (docker|podman), image and run flags.
    engine: Literal["docker", "podman"] = "docker"
    # The image a run uses; without one, <registry>/<namespace>/vllm-harness:<name>-latest
    # (harness.host.images). `pull`: before the run, always, when missing here, or never.
    image: str | None = None
    pull: Literal["always", "missing", "never"] = "missing"
    client: str | None = None  # the engine's client binary ($HARNESS_DOCKER/$HARNESS_PODMAN win)
    build: BuildSpec | None = None
    runtime: str | None = None  # e.g. runc for podman on hosts where crun fails
    ulimits: dict[str, str] = {}
    ipc: Literal["host", "private"] = "host"
    shm_size: str | None = None
    gpus: str = Field(default="all", pattern=r"^(all|\d+(,\d+)*)$")  # "all" or indices "0,1"
    gpus_per_job: int | None = Field(default=None, gt=0)  # BUILDKITE_PARALLEL_JOB i -> GPUs
    # Replaces the device flags the accelerator gives the selected GPUs (harness.host.launch.gpus):
    # for a runtime that wants others, or [] where the device cannot exist (a CPU stand-in).
    gpu_flags: list[str] | None = None
    network: str | None = None  # e.g. host (podman/runc hosts without a usable bridge)
    memory: str | None = None  # container memory limit, e.g. 16g (no swap beyond it)
    readonly_mounts: list[str] = []  # extra "HOST:CONTAINER" bind mounts, always read-only
    # Where the model comes from: the hub id (GPU runs) or the tiny offline recipe.
    model_source: Literal["hub", "tiny"]
    capabilities: list[str] = []
    env: dict[str, str] = {}
    pass_env: list[str] = []  # passed by name only (secrets), never by value
    engine_args: dict[str, Any] = {}
    python: str = "python3"  # interpreter inside the platform
    queue: str | None = None  # Buildkite agent queue
    timeout_minutes: int = Field(default=60, gt=0)
    # Selected when no --platform is given (plan, pipeline). Off for platforms that need
    # something set up first, like a locally built image.
    default: bool = True

    @field_validator("capabilities")
    @classmethod
    def _known_capabilities(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in CAPABILITIES]
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")
        return names

    @field_validator("pass_env")
    @classmethod
    def _names_only(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return names

    @field_validator("readonly_mounts")
    @classmethod
    def _absolute_pairs(cls, mounts: list[str]) -> list[str]:
        for mount in mounts:
            parts = mount.split(":")
            if len(parts) != 2 or not all(part.startswith("/") for part in parts):
                raise ValueError(f"{mount!r}: expected HOST:CONTAINER, both absolute paths")
        return mounts

    @field_validator("env")
    @classmethod
    def _no_secret_values(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if is_secret_name(name):
                raise ValueError(f"{name} looks like a secret: list it in pass_env (by name)")
        return env

    @model_validator(mode="after")
    def _container_needs_image(self) -> "Platform":
        if self.launcher == "container" and not (self.image or self.build):
            raise ValueError("a container platform needs `image` or `build`")
        return self


class PlatformsFile(Strict):
    platforms: dict[str, Platform]


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper.endswith(("_TOKEN", "_KEY", "_SECRET", "_PASSWORD")) or upper in {"HF_TOKEN"}
