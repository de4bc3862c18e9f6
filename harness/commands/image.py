"""`harness image build|push|pull|name --platform P`: a platform's image, named where you can push.

``build`` runs ``<engine> build --pull`` (BuildKit) from the platform's ``build`` section, tags it
``<platform>-latest`` (and ``--image NAME`` when given), reads vLLM's version and commit inside
the image, tags ``<platform>-<version>`` and ``<platform>-<commit>``, and with ``--push`` pushes
every tag. ``push``/``pull`` move the platform's image (or ``--image``); ``name`` prints it.
Exit 0 done, 2 usage (unknown platform, no build section), 3 the engine or registry failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from harness.host import images
from harness.commands.cli import DEFAULT_CASES
from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE
from harness.spec.case import PLATFORMS_FILE, Platform, load_platforms

ACTIONS = ("build", "push", "pull", "name")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--platform", required=True, help="a container platform (rocm, cuda...)")
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES,
                        help="case directory (its platforms.yaml is used)")
    parser.add_argument("--platforms-file", type=Path, default=None,
                        help=f"default: {PLATFORMS_FILE} in the case directory")
    parser.add_argument("--image", default=None,
                        help="also tag (build) or move (push, pull) this exact reference")
    parser.add_argument("--registry", default=None,
                        help=f"registry host (default $HARNESS_REGISTRY or {images.DEFAULT_REGISTRY})")
    parser.add_argument("--namespace", default=None, help="namespace (default $HARNESS_NAMESPACE "
                                                          f"or {images.DEFAULT_NAMESPACE})")
    parser.add_argument("--engine", choices=["docker", "podman"], default=None)
    parser.add_argument("--push", action="store_true", help="build: push every tag afterwards")


def load_platform(args: argparse.Namespace) -> Platform:
    case_dir = args.cases if args.cases.is_dir() else args.cases.parent
    platforms = load_platforms(args.platforms_file or case_dir / PLATFORMS_FILE)
    if args.platform not in platforms:
        raise ValueError(f"unknown platform {args.platform!r} (known: {', '.join(platforms)})")
    platform = platforms[args.platform]
    if platform.launcher != "container":
        raise ValueError(f"platform {platform.name} runs on this host, it has no image")
    return platform


def run(args: argparse.Namespace) -> int:
    try:
        platform = load_platform(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    environ = dict(os.environ)
    registry, namespace = images.settings(environ, args.registry, args.namespace)
    environ.update(HARNESS_REGISTRY=registry, HARNESS_NAMESPACE=namespace)
    prefix = images.client(args.engine or platform.engine, platform, environ)
    image = args.image or images.platform_image(platform, environ)
    try:
        if args.action == "name":
            print(image)
        elif args.action == "pull":
            pulled = images.pull(prefix, image, environ)
            if not pulled.ok:
                raise images.ImageError(pulled.message)
            print(f"pulled {image}: {images.digest_of(image, images.inspect(prefix, image, environ) or {})}")
        elif args.action == "push":
            images.push(prefix, image, environ)
            print(f"pushed {image}")
        else:
            return build(args, platform, prefix, environ, registry, namespace)
    except images.ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INFRA
    return EXIT_OK


def build(args: argparse.Namespace, platform: Platform, prefix: list[str],
          environ: dict[str, str], registry: str, namespace: str) -> int:
    if platform.build is None:
        print(f"error: platform {platform.name} has no `build` section", file=sys.stderr)
        return EXIT_USAGE
    latest = images.image_ref(registry, namespace, platform.name, images.MOVING_TAG)
    print("+ " + " ".join(images.build_argv(prefix, platform, latest)), flush=True)
    try:
        built = images.build(prefix, platform, latest, environ)
    except subprocess.TimeoutExpired:
        raise images.ImageError(f"building {latest} overran {images.BUILD_TIMEOUT_S} s") from None
    if built.returncode != 0:
        raise images.ImageError(f"building {latest} failed (exit {built.returncode})")
    version, commit = images.read_version(prefix, platform, latest, environ)
    tags = [images.image_ref(registry, namespace, platform.name, t)
            for t in images.version_tags(version, commit)]
    if args.image:
        tags.append(args.image)
    for target in tags:
        images.tag(prefix, latest, target, environ)
    names = list(dict.fromkeys([latest, *tags]))
    print(f"built {latest}: vLLM {version or 'unknown'}, commit {commit or 'unknown'}")
    for name in names:
        if args.push:
            images.push(prefix, name, environ)
        print(f"  {'pushed' if args.push else 'tagged'} {name}")
    return EXIT_OK
