"""Prove an image's Python packages were only added to, never changed: snapshot, then verify.

    python3 frozen_base.py snapshot FILE   # before installing the harness
    python3 frozen_base.py verify FILE     # after: exit 1 naming every changed distribution

The harness images exist to test the vLLM a base image ships; an install that upgraded torch or
vLLM as a side effect would quietly test something else.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata


def installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name:
            found[name] = dist.version
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("snapshot", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    command, path = argv
    if command == "snapshot":
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(installed(), handle, indent=1, sort_keys=True)
        return 0
    with open(path, encoding="utf-8") as handle:
        before = json.load(handle)
    now = installed()
    changed = [f"{name} {version} -> {now.get(name, 'removed')}"
               for name, version in sorted(before.items()) if now.get(name) != version]
    added = sorted(f"{name} {version}" for name, version in now.items() if name not in before)
    print(f"frozen_base: added {len(added)}: {', '.join(added) or '-'}")
    if changed:
        print("frozen_base: the base image's packages changed:\n  " + "\n  ".join(changed),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
