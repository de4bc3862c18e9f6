"""Nightly-like images in the loopback registry for the auto-bisect's container tests.

Each tag is the test base image plus thin layers, as a real nightly differs from the previous
one: the files the image records its stack in (``/opt/rocm/.info/version`` as a ROCm install
writes it), a build-version file, and the same ENV in every tag. Pushed oldest first (creation
times follow), then removed locally so each bisect step pulls its image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class NightlyTag:
    tag: str
    files: dict[str, str]  # absolute path in the image -> content
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def rocm_nightlies(count: int, first_bad: int, good_rocm: str = "6.4.1-120",
                   bad_rocm: str = "7.0.0-38") -> list[NightlyTag]:
    """``count`` tags ``nightly-<7 hex>`` where only /opt/rocm/.info/version changes, at
    ``first_bad``; the stand-in worker breaks on the new ROCm (same ENV in every tag)."""
    return [NightlyTag(f"nightly-{0xabc0000 + i:07x}",
                       {"/opt/rocm/.info/version": (bad_rocm if i >= first_bad else good_rocm)
                        + "\n", "/etc/vllm-build-version": f"nightly {i}\n"},
                       {"STANDIN_BREAKS_ON_ROCM": bad_rocm.split("-")[0]})
            for i in range(count)]


def build_and_push(docker, registry, base: str, repo: str, tags: list[NightlyTag],
                   workdir: Path) -> list[str]:
    refs = []
    for tag in tags:
        context = workdir / f"{repo.replace('/', '_')}-{tag.tag}"
        context.mkdir(parents=True)
        lines = [f"FROM {base}"]
        for number, (path, content) in enumerate(sorted(tag.files.items())):
            (context / f"file{number}").write_text(content)
            lines.append(f"COPY file{number} {path}")
        lines += [f'ENV {k}="{v}"' for k, v in tag.env.items()]
        lines += [f'LABEL {k}="{v}"' for k, v in tag.labels.items()]
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        ref = f"{registry.address}/{repo}:{tag.tag}"
        built = docker("build", "--network=host", "-t", ref, str(context), timeout=300,
                       env_extra={"DOCKER_BUILDKIT": "1"})
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
        pushed = docker("push", ref, timeout=600)
        assert pushed.returncode == 0, pushed.stderr[-2000:]
        refs.append(ref)
        time.sleep(1.1)  # distinct creation times, whatever the clock's resolution
    removed = docker("rmi", *refs, timeout=120)
    assert removed.returncode == 0, removed.stderr
    return refs
