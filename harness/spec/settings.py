"""Organisation settings from the environment: which platforms it has, and their agent queues.

``cases/platforms.yaml`` ships defaults (``default:`` and ``queue:`` per platform, with vLLM's
own queue names); an organisation overrides them without editing the file, in the environment
of the agent that plans the build (the Buildkite pipeline's or the agent's environment):

* ``HARNESS_PLATFORMS=rocm,cuda``: the platforms planned when no ``--platform`` is given
  (`harness pipeline`, `plan`, `run`, `doctor`). The bootstrap then plans only what the
  organisation has agents for: no step waits for an agent that does not exist.
* ``HARNESS_QUEUE_<PLATFORM>=<queue>`` (``HARNESS_QUEUE_ROCM``, ``HARNESS_QUEUE_CPU_PODMAN``):
  the agent queue of that platform's steps.
"""

from __future__ import annotations

import re
from typing import Mapping

from harness.spec.platform import Platform

PLATFORMS_VAR = "HARNESS_PLATFORMS"
QUEUE_VAR_PREFIX = "HARNESS_QUEUE_"
_QUEUE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}")


class SettingError(ValueError):
    pass


def queue_var(platform: str) -> str:
    return QUEUE_VAR_PREFIX + re.sub(r"[^A-Z0-9]", "_", platform.upper())


def default_platforms(platforms: Mapping[str, Platform], environ: Mapping[str, str]) -> list[str]:
    """``HARNESS_PLATFORMS`` when set, else the platforms marked ``default``."""
    text = environ.get(PLATFORMS_VAR, "").strip()
    if not text:
        return [name for name, p in platforms.items() if p.default]
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in platforms]
    if unknown:
        raise SettingError(f"{PLATFORMS_VAR}={text!r}: unknown platform {unknown[0]!r}; "
                           f"known: {sorted(platforms)}")
    return list(dict.fromkeys(names))


def with_queues(platforms: Mapping[str, Platform], environ: Mapping[str, str]
                ) -> dict[str, Platform]:
    """The platforms with ``HARNESS_QUEUE_<PLATFORM>`` applied."""
    out = {}
    for name, platform in platforms.items():
        queue = environ.get(queue_var(name), "").strip()
        if queue and not _QUEUE_RE.fullmatch(queue):
            raise SettingError(f"{queue_var(name)}={queue!r}: not a queue name")
        out[name] = platform.model_copy(update={"queue": queue}) if queue else platform
    return out
