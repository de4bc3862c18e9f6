"""`harness tests fetch`: vLLM's own tests/ tree for a vLLM version or commit, cached once.

Run it on the agent before `harness run` of vllm_tests cases (outside every job's deadline):
`--version 0.32.0` takes the tree from vLLM's source distribution on the package index
(checked against the index's sha256), `--checkout DIR [--commit SHA]` from a vLLM checkout.
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
    fetch.add_argument("--commit", default=None, help="with --checkout: the commit (default HEAD)")
    fetch.add_argument("--index", default=None,
                       help="package index (simple API) to take the sdist from (default PyPI)")
    fetch.add_argument("--cache", type=Path, default=None,
                       help="tests cache (default: $HARNESS_VLLM_TESTS or "
                            "~/.cache/vllm-harness/vllm-tests)")


def run(args: argparse.Namespace, get=None) -> int:
    from harness.testtree import INDEX, FetchError, cache_root, fetch_checkout, fetch_sdist

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
