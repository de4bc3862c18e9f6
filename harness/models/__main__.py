"""python -m harness.models build RECIPE [--cache DIR] | digest RECIPE | list"""

from __future__ import annotations

import argparse
import pathlib
import sys

from . import RECIPES, build_model, default_cache_root, recipe_digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.models", description="Build tiny offline test models.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or reuse) a recipe's model directory and print its path")
    b.add_argument("recipe", choices=sorted(RECIPES))
    b.add_argument("--cache", type=pathlib.Path, default=None,
                   help="cache root (default: $HARNESS_MODEL_CACHE or ~/.cache/vllm-harness/models)")
    d = sub.add_parser("digest", help="print a recipe's digest")
    d.add_argument("recipe", choices=sorted(RECIPES))
    sub.add_parser("list", help="list recipes")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        print(build_model(args.recipe, args.cache or default_cache_root()))
    elif args.cmd == "digest":
        print(recipe_digest(args.recipe))
    else:
        for name, r in sorted(RECIPES.items()):
            print(f"{name}\t{r.family}\t{recipe_digest(name)[:16]}\t{r.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
