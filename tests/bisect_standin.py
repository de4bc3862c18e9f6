"""STAND-IN WORKER (not pytest, not vLLM) for the bisect's container tests.

Run inside a real container in place of the worker's ``python -m pytest ...`` (the platform's
``python`` is a script that execs this), it writes the result the real worker would write, with
a verdict the IMAGE declares in its environment: ``STANDIN_BEHAVIOUR`` = good (passes), bad
(fails), flaky (fails its first completed run, passes the next, and so on: one run in two).
Every completed call is appended to ``<results>/standin-calls.log`` ("<version> <run-id>"), so
a test can count the engine runs and see that a resumed bisect repeated none.

The result's fingerprint records the image's stack with the real worker's reader
(harness.worker.stack: /opt/rocm/.info/version, dist-info versions, ...). With
``STANDIN_BREAKS_ON_ROCM=<version prefix>`` (the same in every image), the verdict follows the
ROCm version the image records instead: it fails where that version starts with the prefix, so
that a planted break is one stack component changing between two tags and nothing else.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from harness.results import Expect, LogInfo, Result, result_path, write_result
from harness.runinfo import now
from harness.worker.stack import stack_versions

SLEEP_S = 2.0  # long enough for a test to interrupt a step in progress


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def main(argv: list[str]) -> int:
    results, run_id = Path(option(argv, "--harness-results")), option(argv, "--harness-run-id")
    platform, case_id = option(argv, "--harness-platform"), option(argv, "-k")
    version = os.environ.get("STANDIN_VERSION", "?")
    behaviour = os.environ.get("STANDIN_BEHAVIOUR", "good")
    stack = stack_versions()
    breaks_on = os.environ.get("STANDIN_BREAKS_ON_ROCM")
    if breaks_on:
        behaviour = "bad" if (stack.get("rocm") or "").startswith(breaks_on) else "good"
    calls = results / "standin-calls.log"
    print(f"stand-in worker: image {version} ({behaviour}), run {run_id}", flush=True)
    time.sleep(SLEEP_S)
    done_before = [line.split()[0] for line in
                   (calls.read_text().splitlines() if calls.exists() else [])]
    fails = behaviour == "bad" or (behaviour == "flaky" and done_before.count(version) % 2 == 0)
    result = Result(
        run_id=run_id, job_id=f"{case_id}@{platform}", case_id=case_id, platform=platform,
        status="failed" if fails else "passed", failure_class="crash" if fails else None,
        message=f"stand-in: image {version} behaves {behaviour}",
        expect=Expect(), log=LogInfo(tail=f"stand-in worker: image {version} ({behaviour})"),
        fingerprint={"image": os.environ.get("HARNESS_IMAGE", ""), "container": True,
                     "image_digest": os.environ.get("HARNESS_IMAGE_DIGEST") or None,
                     "stand_in": True, "vllm": stack["vllm"], "stack": stack},
        started_at=now(), finished_at=now())
    write_result(result_path(results, run_id, platform, case_id), result)
    with open(calls, "a") as log:
        log.write(f"{version} {run_id}\n")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
