"""Engine start in a container with the persistent compile cache: first run (empty cache) against
the second (the cache the first one filled), back to back, same image, same case.

    flock /tmp/harness-heavy.lock .venv/bin/python benchmarks/bench_compile_cache.py \
        [--case qwen] [--engine podman|docker]

The image is the Debian base (docker/build-base.sh, `localhost/harness-base:bookworm`) with this
checkout's .venv mounted read-only, as in tests/test_container_real.py; the platform is
cpu-podman (or, with --engine docker and DOCKER_HOST/HARNESS_DOCKER set, the same entry with
`engine: docker`). The compile cache is a fresh temporary directory ($HARNESS_COMPILE_CACHE),
removed afterwards. Prints each run's engine startup (the result's timings.startup_s), the
cache's size after the first run, and the ratio second/first.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.results import read_result  # noqa: E402

BASE_IMAGE = "localhost/harness-base:bookworm"
# vLLM's own words on compiling and on its cache, to show what the second start reused.
COMPILE_LINES = re.compile(r"torch\.compile|compiled graph|from the cache|cache directory|"
                           r"Compiling a graph|compilation took|Dynamo bytecode", re.I)


def platforms_file(directory: Path, engine: str) -> tuple[Path, str]:
    venv, home = Path(sys.prefix), Path(sys.base_prefix)
    data = yaml.safe_load((REPO / "cases/platforms.yaml").read_text())
    entry = dict(data["platforms"]["cpu-podman"])
    entry.update(image=BASE_IMAGE, python=str(venv / "bin/python"),
                 readonly_mounts=[f"{venv}:{venv}", f"{home}:{home}"])
    name = "cpu-podman"
    if engine == "docker":
        entry.pop("runtime")
        entry.update(engine="docker", pull="never")
        name = "cpu-docker"
    data["platforms"] = {name: entry}
    path = directory / "platforms.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, name


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="qwen", help="-k expression (default: qwen)")
    parser.add_argument("--engine", choices=["podman", "docker"], default="podman")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="harness-bench-cache-"))
    try:
        platforms, name = platforms_file(work, args.engine)
        cache = work / "compile"
        env = {**os.environ, "HARNESS_COMPILE_CACHE": str(cache)}
        startups = []
        for attempt in ("first (empty cache)", "second (cache filled)"):
            run_id = f"bench-cache-{os.getpid()}-{len(startups)}"
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "harness", "run", "--platform", name, "--platforms-file",
                 str(platforms), "--cases", str(REPO / "cases"), "--results",
                 str(work / "results"), "--run-id", run_id, "-k", args.case],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
            wall = time.monotonic() - began
            results = [read_result(p) for p in (work / "results" / run_id / name).glob("*.json")]
            if done.returncode != 0 or not results:
                print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
                return 1
            startup = results[0].timings.startup_s
            for log in (work / "results" / run_id / name).glob("*.log"):
                for line in log.read_text(errors="replace").splitlines():
                    if COMPILE_LINES.search(line):
                        print(f"    {log.name}: {line.strip()[-200:]}")
            startups.append(startup)
            print(f"{attempt}: engine startup {startup:.1f} s, run {wall:.0f} s, "
                  f"status {results[0].status}; compile cache {du(cache) / 2**20:.1f} MiB")
        print(f"second/first engine startup: {startups[1] / startups[0]:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
