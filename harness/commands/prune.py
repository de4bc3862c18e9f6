"""`harness prune`: remove the harness's own old containers and images, by label, nothing else.

Agents' disks fill up with nightly images and with containers kept by ``--keep-container``.
This keeps the newest ``--keep`` of each kind (images per platform) and removes the older ones.
It only ever touches what carries the harness's labels, and checks the label again on each
object the engine lists (a filter the engine ignored must not widen the selection). Running
containers are never removed (a job may be using them); an image a container still uses is
reported and kept (no ``--force``).

Labels: containers get ``vllm-harness.run`` and ``vllm-harness.platform`` from the launcher;
images built by ``harness image build`` carry ``vllm-harness.image=<platform>``
(``--label vllm-harness.image=rocm`` on a build by hand). The client binary and daemon are the
same settings as for runs ($HARNESS_DOCKER/$HARNESS_PODMAN, DOCKER_HOST).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from harness.host.launch.container import LABEL
from harness.outcomes import EXIT_INFRA, EXIT_OK

CONTAINER_LABEL = LABEL
PLATFORM_LABEL = "vllm-harness.platform"
IMAGE_LABEL = "vllm-harness.image"
CALL_TIMEOUT_S = 120


class EngineError(Exception):
    """The container engine could not be asked or refused a listing."""


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    created: str  # RFC 3339 from `inspect`: sorts as time within one engine
    group: str  # images: the platform label's value; containers: one group
    running: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["docker", "podman"], default="docker")
    parser.add_argument("--keep", type=_keep_count, default=3,
                        help="newest containers (and images per platform) to keep (default 3)")
    parser.add_argument("--platform", default=None,
                        help="only this platform's containers and images")
    parser.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")


def _keep_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        containers = list_containers(args.engine, args.platform)
        images = list_images(args.engine, args.platform)
    except EngineError as exc:
        print(f"error: {args.engine}: {exc}", file=sys.stderr)
        return EXIT_INFRA
    doomed_containers = select_old([c for c in containers if not c.running], args.keep)
    doomed_images = select_old(images, args.keep)
    verb = "would remove" if args.dry_run else "removed"
    failures = 0
    for kind, items, command in (("container", doomed_containers, ["rm"]),
                                 ("image", doomed_images, ["rmi"])):
        for item in items:
            if not args.dry_run:
                done = _call(args.engine, *command, item.id)
                if done.returncode != 0:
                    failures += 1
                    why = (done.stderr or done.stdout).strip().splitlines()
                    print(f"kept {kind} {item.name}: {why[-1] if why else 'refused'}")
                    continue
            print(f"{verb} {kind} {item.name} ({item.created[:19]})")
    kept = len(containers) - len(doomed_containers) + len(images) - len(doomed_images)
    print(f"{args.engine}: {verb} {len(doomed_containers)} container(s) and "
          f"{len(doomed_images)} image(s); {kept} kept"
          + (f"; {failures} could not be removed" if failures else ""))
    return EXIT_OK


def select_old(items: list[Item], keep: int) -> list[Item]:
    """Per group, everything but the ``keep`` newest (pure)."""
    doomed: list[Item] = []
    for group in sorted({item.group for item in items}):
        members = sorted((i for i in items if i.group == group), key=lambda i: i.created,
                         reverse=True)
        doomed += members[keep:]
    return doomed


def list_containers(engine: str, platform: str | None) -> list[Item]:
    filters = ["--filter", f"label={CONTAINER_LABEL}"]
    if platform:
        filters += ["--filter", f"label={PLATFORM_LABEL}={platform}"]
    ids = _ids(engine, "ps", "-a", "-q", "--no-trunc", *filters)
    items = []
    for data in _inspect(engine, "container", ids):
        labels = (data.get("Config") or {}).get("Labels") or {}
        if CONTAINER_LABEL not in labels or (platform and labels.get(PLATFORM_LABEL) != platform):
            continue  # not ours after all: never touched
        items.append(Item(id=data["Id"], name=str(data.get("Name", data["Id"])).lstrip("/"),
                          created=str(data.get("Created", "")), group="containers",
                          running=bool((data.get("State") or {}).get("Running"))))
    return items


def list_images(engine: str, platform: str | None) -> list[Item]:
    label = f"label={IMAGE_LABEL}" + (f"={platform}" if platform else "")
    ids = _ids(engine, "images", "-q", "--no-trunc", "--filter", label)
    items = []
    for data in _inspect(engine, "image", ids):
        labels = (data.get("Config") or {}).get("Labels") or data.get("Labels") or {}
        value = labels.get(IMAGE_LABEL)
        if value is None or (platform and value != platform):
            continue
        tags = data.get("RepoTags") or []
        items.append(Item(id=data["Id"], name=tags[0] if tags else data["Id"][:19],
                          created=str(data.get("Created", "")), group=value))
    return items


def _ids(engine: str, *args: str) -> list[str]:
    done = _call(engine, *args)
    if done.returncode != 0:
        raise EngineError(_last_line(done) or f"`{' '.join(args[:2])}` exited {done.returncode}")
    return list(dict.fromkeys(line.strip() for line in done.stdout.splitlines() if line.strip()))


def _inspect(engine: str, kind: str, ids: list[str]) -> list[dict]:
    if not ids:
        return []
    done = _call(engine, kind, "inspect", *ids)
    if done.returncode != 0:  # one vanished meanwhile: ask one by one
        found = [_call(engine, kind, "inspect", one) for one in ids]
        return [d for f in found if f.returncode == 0 for d in _json_list(f.stdout)]
    return _json_list(done.stdout)


def _json_list(text: str) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    return [d for d in data if isinstance(d, dict) and d.get("Id")] if isinstance(data, list) \
        else []


def _call(engine: str, *args: str) -> subprocess.CompletedProcess:
    from harness.host.images import client

    try:
        return subprocess.run([*client(engine, None, os.environ), *args], capture_output=True, text=True, errors="replace",
                              stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT_S)
    except FileNotFoundError:
        raise EngineError("not installed (not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"no answer within {CALL_TIMEOUT_S} s") from None
    except OSError as exc:
        raise EngineError(exc.strerror or str(exc)) from None


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else ""
