"""One bisect step: `harness run --image CANDIDATE` for the case, and what its result says.

The step goes through the same command as any run (a child ``harness run`` process, its own
process group, a deadline), and writes a normal run directory:
``<bisect dir>/<step>/<platform>/<case>.json`` with its logs, plus ``<step>/harness-run.log``.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.host.bisect.search import Outcome
from harness.host.launch.start_worker import run_worker
from harness.outcomes import EXIT_USAGE
from harness.results import Result, ResultFileError, read_result, result_path

# Beyond the platform's own deadline (which `harness run` enforces and reports as a timeout
# result), so the child's deadline normally fires first.
STEP_MARGIN_S = 600
RUN_LOG = "harness-run.log"
# What a step keeps of its result's fingerprint: the range to read and the stack's versions.
FINGERPRINT_KEPT = ("vllm", "image", "image_digest", "stack")
GOOD_STATUSES = ("passed", "xpassed")  # the case's code path works on this image
BAD_STATUSES = ("failed", "xfailed")  # it fails (an xfail case fails as declared)
# Lines of a log tail that name an infrastructure cause better than "worker exited 125".
_CAUSE = re.compile(r"(pull access denied|manifest unknown|not found|unable to find image|"
                    r"no such image|connection refused|error pulling|failed to resolve|"
                    r"Error response from daemon|initializing source)", re.IGNORECASE)


@dataclass(frozen=True)
class StepRequest:
    bisect_dir: Path
    name: str
    case_id: str
    case_file: Path
    platform: str
    platforms_file: Path
    image: str
    timeout_s: float
    engine: str | None = None
    pull: str = "missing"  # candidates live in a registry: fetch each one the host lacks
    harness: tuple[str, ...] = (sys.executable, "-m", "harness")

    def argv(self) -> list[str]:
        argv = [*self.harness, "run", "--platform", self.platform, "--cases", str(self.case_file),
                "--platforms-file", str(self.platforms_file), "-k", self.case_id,
                "--image", self.image, "--pull", self.pull, "--results", str(self.bisect_dir),
                "--run-id", self.name]
        if self.engine:
            argv += ["--engine", self.engine]
        return argv

    def result_file(self) -> Path:
        return result_path(self.bisect_dir, self.name, self.platform, self.case_id)


@dataclass(frozen=True)
class StepOutcome:
    outcome: Outcome | None  # None: interrupted, record nothing (the rerun repeats the step)
    status: str
    failure_class: str | None
    reason: str
    result: str  # relative to the bisect directory; "" when none was written
    fingerprint: dict[str, object] = field(default_factory=dict)
    duration_s: float = 0.0
    exit_code: int | None = None


class StepUsageError(Exception):
    """`harness run` refused the step's command line (exit 2): a bisect set-up error."""


def classify(result: Result | None, exit_code: int | None, interrupted: bool,
             missing_why: str = "") -> tuple[Outcome | None, str]:
    """What one run says about its candidate: pass, fail, infra (skip) or None (interrupted)."""
    if interrupted or (result is not None and result.failure_class == "interrupted"):
        return None, "interrupted"
    if result is None:
        return "infra", f"no result written (harness run exited {exit_code}; {missing_why})"
    if result.status in GOOD_STATUSES:
        return "pass", result.message or result.status
    if result.status in BAD_STATUSES:
        return "fail", f"{result.failure_class or result.status}: {result.message}"
    if result.status == "skipped":
        return "infra", f"the case was skipped on this platform: {result.message}"
    cause = next((line.strip() for line in reversed(result.log.tail.splitlines())
                  if _CAUSE.search(line)), "")
    reason = f"{result.failure_class or 'error'}: {result.message}"
    if _CAUSE.search(reason):  # the message already names the cause
        return "infra", reason
    return "infra", reason + (f" ({cause[:300]})" if cause else "")


def run_step(request: StepRequest, env: dict[str, str], echo: bool = True) -> StepOutcome:
    step_dir = request.bisect_dir / request.name
    step_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    done = run_worker(request.argv(), step_dir / RUN_LOG, timeout_s=request.timeout_s, env=env,
                      echo=echo)
    duration = time.monotonic() - began
    if done.returncode == EXIT_USAGE and not done.interrupted:
        tail = (step_dir / RUN_LOG).read_text(errors="replace").strip().splitlines()[-3:]
        raise StepUsageError(f"harness run refused the step: {' | '.join(tail)} "
                             f"(command: {' '.join(request.argv())})")
    path = request.result_file()
    try:
        result: Result | None = read_result(path)
        missing_why = ""
    except ResultFileError as exc:
        result, missing_why = None, exc.problem
    outcome, reason = classify(result, done.returncode, done.interrupted, missing_why)
    if done.timed_out:  # our own deadline, beyond the platform's: the child did not stop
        outcome, reason = "infra", f"the step overran its {request.timeout_s:.0f} s deadline"
    if done.start_error:
        outcome, reason = "infra", f"could not start harness run: {done.start_error}"
    fingerprint = {k: result.fingerprint[k] for k in FINGERPRINT_KEPT
                   if result is not None and k in result.fingerprint}
    return StepOutcome(
        outcome, result.status if result else "missing", result.failure_class if result else None,
        " ".join(reason.split())[:500],
        path.relative_to(request.bisect_dir).as_posix() if result else "",
        fingerprint, round(duration, 1), done.returncode)
