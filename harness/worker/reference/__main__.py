"""``python -m harness.worker.reference JOB``: make the transformers reference of some cases.

JOB is one JSON object written by ``harness reference`` (harness/commands/reference.py), which
has already validated it: ``cases`` (case files), ``results``, ``run_id``, ``model_cache``
(or null), ``source`` (tiny or hub), ``device``. One line per case on stdout; exit 0 when every
case generated (or declares no reference), 3 when the reference failed for some case (its result
says why). It runs where transformers and torch for the device are: this machine's Python, or a
platform's image, as the worker does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.outcomes import EXIT_INFRA, EXIT_OK
from harness.spec.case import load_cases
from harness.spec.platform import reference_platform_name
from harness.worker.reference import run_reference


def main(job: dict) -> int:
    results = Path(job["results"])
    cache = Path(job["model_cache"]) if job.get("model_cache") else None
    worst = EXIT_OK
    for case in load_cases([Path(p) for p in job["cases"]]):
        result = run_reference(case, results, job["run_id"], cache, job["source"],
                               repo=Path.cwd(), device=job["device"])
        print(f"{result.job_id:<45} {result.status:<8} {result.message[:100]}", flush=True)
        if result.status == "error":
            worst = EXIT_INFRA
    print(f"results: {results / job['run_id'] / reference_platform_name(job['device'])}")
    return worst


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
