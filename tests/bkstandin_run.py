"""STAND-IN for Buildkite and its agents, the part that runs processes: a build of a commit,
executed job by job as agents would run it (the pure scheduling is tests/bkstandin_plan.py).

A build starts as Buildkite's default step does, ``buildkite-agent pipeline upload`` of the
repository's ``.buildkite/pipeline.yml``; every later ``pipeline upload`` adds steps. Each job:

* goes to a named agent serving its step's queue (no such agent: an error, not a wait);
* gets a fresh checkout: ``git clone`` of the repository at the build's commit into a new dir;
* runs its commands as the agent's bootstrap does, one script under ``bash -e -c``, after the
  agent's ``environment`` and ``post-checkout`` hooks (sourced, in the checkout), with the
  agent's environment (its own variables: PATH with the harness installed as the README says,
  pinned ``*_VISIBLE_DEVICES``, ``BUILDKITE_AGENT_META_DATA_*``) plus Buildkite's
  (``BUILDKITE_BUILD_NUMBER``, ``_BUILD_ID``, ``_COMMIT``, ``_RETRY_COUNT``, ``_SOURCE``...);
* is killed (its whole process group) at the step's timeout;
* uploads its ``artifact_paths`` to the build's store; ``buildkite-agent`` inside the job is
  tests/bin/buildkite-agent on the same store (``artifact download``, ``annotate``, ``pipeline
  upload``), which also does the upload-time interpolation (``$$`` -> ``$``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.bkstandin_plan import (Build, Job, UnderstoodError, next_step, outcome, parse_upload,
                                  retries_left)

AGENT_BIN = Path(__file__).resolve().parent / "bin"  # the buildkite-agent stand-in
KILL_GRACE_S = 60  # `harness run` stops and removes its container on SIGTERM


@dataclass
class Agent:
    name: str
    queue: str
    env: dict[str, str]  # the agent's own environment before its hooks
    meta_data: dict[str, str] = field(default_factory=dict)
    hooks: Path | None = None  # `environment` (sourced first), `post-checkout` (in the checkout)


@dataclass
class BuildRun:
    """A finished build: its scheduling state, where it ran, each job's log."""

    number: int
    build: Build
    state: Path  # FAKE_BUILDKITE_DIR: artifacts/, annotations/, uploads/, calls.jsonl
    jobs_dir: Path
    logs: dict[str, list[Path]] = field(default_factory=dict)  # step key -> log per attempt

    @property
    def passed(self) -> bool:
        return self.build.passed

    def log(self, key: str, attempt: int = -1) -> str:
        return self.logs[key][attempt].read_text(errors="replace")

    def annotation(self, context: str) -> str:
        return (self.state / "annotations" / f"{context}.md").read_text()

    def artifact(self, path: str) -> Path:
        return self.state / "artifacts" / path


def run_build(repo: Path, commit: str, agents: list[Agent], state: Path, number: int,
              source: str = "schedule", build_env: dict[str, str] | None = None) -> BuildRun:
    """Run build ``number`` of ``commit`` to its end; ``state`` is the build's own store."""
    state.mkdir(parents=True, exist_ok=True)
    jobs_dir = state / "jobs"
    run = BuildRun(number, Build(), state, jobs_dir)
    build_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{repo}#{number}"))
    base = {"BUILDKITE": "true", "CI": "true", "BUILDKITE_BUILD_NUMBER": str(number),
            "BUILDKITE_BUILD_ID": build_id, "BUILDKITE_COMMIT": commit,
            "BUILDKITE_BRANCH": "main", "BUILDKITE_SOURCE": source,
            "BUILDKITE_PIPELINE_SLUG": "vllm-harness-nightly", "BUILDKITE_REPO": str(repo),
            "BUILDKITE_BUILD_URL": f"https://buildkite.invalid/builds/{number}",
            "FAKE_BUILDKITE_DIR": str(state), **(build_env or {})}
    default = parse_upload({"steps": [{"label": ":pipeline:", "key": "default-upload",
                                       "command": "buildkite-agent pipeline upload "
                                                  ".buildkite/pipeline.yml"}]}, source)
    run.build.add(default)
    seen_uploads = 0
    while (step := next_step(run.build)) is not None:
        agent = _agent_for(step.queue, agents, step.key)
        while True:
            attempt = len(run.build.attempts(step.key))
            log = jobs_dir / f"{step.key}.{attempt}.log"
            status = _run_job(step, agent, repo, commit, base, attempt, log)
            run.logs.setdefault(step.key, []).append(log)
            run.build.jobs.append(Job(step.key, attempt, status, agent.name))
            if not retries_left(step, run.build.attempts(step.key), status):
                break
        run.build.outcomes[step.key] = outcome(step, status)
        uploads = sorted((state / "uploads").glob("*.yml"), key=lambda p: int(p.stem))
        for path in uploads[seen_uploads:]:
            run.build.add(parse_upload(yaml.safe_load(path.read_text()), source, str(path)))
        seen_uploads = len(uploads)
    (state / "build.json").write_text(json.dumps(
        {"number": number, "outcomes": run.build.outcomes,
         "jobs": [vars(j) for j in run.build.jobs]}, indent=1))
    return run


def _agent_for(queue: str | None, agents: list[Agent], key: str) -> Agent:
    wanted = queue or "default"
    for agent in agents:
        if agent.queue == wanted:
            return agent
    raise UnderstoodError(f"step {key}: no agent serves queue {wanted!r} (agents: "
                          f"{', '.join(f'{a.name}={a.queue}' for a in agents)}); on Buildkite "
                          "it would wait forever")


def _run_job(step, agent: Agent, repo: Path, commit: str, base: dict[str, str], attempt: int,
             log: Path) -> int | None:
    checkout = log.parent / f"{step.key}.{attempt}.checkout"
    shutil.rmtree(checkout, ignore_errors=True)
    checkout.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(repo), str(checkout)],
                   check=True, timeout=300, capture_output=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "--quiet", commit], check=True,
                   timeout=300, capture_output=True)
    env = {**agent.env, **base, "BUILDKITE_RETRY_COUNT": str(attempt),
           "BUILDKITE_JOB_ID": str(uuid.uuid4()), "BUILDKITE_STEP_KEY": step.key,
           "BUILDKITE_LABEL": step.label, "BUILDKITE_AGENT_NAME": agent.name,
           "BUILDKITE_BUILD_CHECKOUT_PATH": str(checkout),
           "BUILDKITE_AGENT_META_DATA_QUEUE": agent.queue,
           **{f"BUILDKITE_AGENT_META_DATA_{k.upper()}": v for k, v in agent.meta_data.items()}}
    env["PATH"] = f"{AGENT_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    script = "\n".join(step.commands)
    hooks = [agent.hooks / name for name in ("environment", "post-checkout")
             if agent.hooks is not None and (agent.hooks / name).is_file()]
    script = "".join(f"source {shlex.quote(str(hook))}\n" for hook in hooks) + script
    with open(log, "w") as out:
        out.write(f"~~~ {step.label} (attempt {attempt}) on {agent.name}\n$ {script}\n")
        out.flush()
        child = subprocess.Popen(["/bin/bash", "-e", "-c", script], cwd=checkout, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            status = child.wait(timeout=step.timeout_s)
        except subprocess.TimeoutExpired:
            _stop_group(child)
            out.write(f"\n~~~ timed out after {step.timeout_s:.0f} s: killed\n")
            status = None
        else:
            _stop_group(child)  # nothing the job started may outlive it
        if step.artifact_paths:
            uploaded = subprocess.run(["buildkite-agent", "artifact", "upload",
                                       ";".join(step.artifact_paths)], cwd=checkout, env=env,
                                      capture_output=True, text=True, timeout=600)
            out.write(f"~~~ artifact upload exit {uploaded.returncode} {uploaded.stderr}\n")
        out.write(f"~~~ exit status {status}\n")
    return status


def _stop_group(child: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < deadline:
            child.poll()  # reap the leader: a zombie still counts as a member of its group
            try:
                os.killpg(child.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        if child.poll() is None:
            child.wait(timeout=KILL_GRACE_S)
