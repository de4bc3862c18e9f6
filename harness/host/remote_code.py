"""Preflight for models that run the model repository's own code (``trust_remote_code``).

Phi-4-multimodal's processor and configuration are remote code: the pinned snapshot's
``processing_phi4mm.py`` runs under whatever transformers the platform's image has. If the two
do not fit (a name transformers removed, a module the image lacks), vLLM fails 15 minutes into
an engine start on a GPU agent. This check loads the snapshot's remote configuration and
processor the way vLLM does (``AutoConfig`` and ``AutoProcessor`` with
``trust_remote_code=True``), offline, in the platform's own Python and image, in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

# Run in the platform's Python: argv[1] is the snapshot directory. One JSON line on stdout.
PROBE = """
import json, sys
out = {"ok": False}
try:
    import transformers
    out["transformers"] = transformers.__version__
    snapshot = sys.argv[1]
    config = transformers.AutoConfig.from_pretrained(snapshot, trust_remote_code=True)
    out["config"] = type(config).__name__
    processor = transformers.AutoProcessor.from_pretrained(snapshot, trust_remote_code=True)
    out["processor"] = type(processor).__name__
    out["ok"] = True
except BaseException as exc:
    out["error"] = (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:400]
print("HARNESS-REMOTE-CODE " + json.dumps(out), flush=True)
"""
MARK = "HARNESS-REMOTE-CODE "
CONTAINER_HUB = "/harness-hub"
TIMEOUT_S = 120


def remote_code_snapshots(jobs) -> list[tuple[str, str | None]]:
    """(hub id, revision) of the jobs whose engine runs the model repository's code."""
    return list(dict.fromkeys((job.case.model.hub, job.case.model.revision) for job in jobs
                              if not job.skip_reason and job.platform.model_source == "hub"
                              and job.engine_args.get("trust_remote_code")))


def probe_argv(python: str, snapshot: Path, *, container: list[str] | None = None,
               cache: Path | None = None) -> list[str]:
    """The command that loads ``snapshot``'s remote code: the platform's Python here, or
    ``container`` (an engine's ``run`` prefix with the image last) with the hub cache mounted
    read-only, offline, no network."""
    if container is None:
        return [python, "-c", PROBE, str(snapshot)]
    assert cache is not None
    inside = Path(CONTAINER_HUB) / snapshot.relative_to(cache)
    *engine, image = container
    return [*engine, "--rm", "--network", "none", "-v", f"{cache}:{CONTAINER_HUB}:ro",
            "-e", "HF_HUB_OFFLINE=1", "-e", "TRANSFORMERS_OFFLINE=1",
            "-e", "HF_MODULES_CACHE=/tmp/harness-hf-modules", image,
            python, "-c", PROBE, str(inside)]


def run_probe(argv: list[str]) -> tuple[int, str]:
    """(exit code, stdout and stderr): through proc.call, own process group, a deadline."""
    from harness import proc

    done = proc.call(argv, timeout_s=TIMEOUT_S)
    if done is None:
        return 127, f"could not start {argv[0]}"
    if done.returncode is None:
        return 124, f"no answer within {TIMEOUT_S} s"
    return done.returncode, (done.stdout or "") + (done.stderr or "")


def parse(output: str) -> dict:
    for line in reversed(output.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = output.strip().splitlines()[-1:] or ["no output"]
    return {"ok": False, "error": f"the probe said nothing ({tail[0][:300]})"}
