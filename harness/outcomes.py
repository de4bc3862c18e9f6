"""The one definition of what a job, a check and a command can end as.

Statuses, failure classes (and which of them say "the code under test was not judged"), check
outcomes, exit codes and their severity. Every other module imports these names; none keeps a
copy.

The retry rule (see ``harness.host.execute`` and ``harness.host.repeats``): a job that ends in a RETRIED
class gets one more attempt, on the same machine with the same image. Who is to blame for the
same class twice depends on the class:

- CODE_CAUSED classes (a warm-up hang, an OOM during encoder-cudagraph capture): the same class
  again is a verdict on the case, status ``failed`` (red), both attempts in ``attempts``.
- NODE_CAUSED classes (a GPU hang, a device flag the engine refuses, a container removed under
  the run, a broken runtime): twice on the same node is still the node's fault: status
  ``error`` (exit 3), the node named, and Buildkite's retry (which can land elsewhere) decides.
  The same class on two *different* nodes is the case's failure.
"""

from __future__ import annotations

from typing import Literal, get_args

# ---------------------------------------------------------------- statuses

Status = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
STATUSES: tuple[str, ...] = get_args(Status)

# ---------------------------------------------------------------- failure classes

FailureClass = Literal[
    "startup-timeout",  # engine not ready within the deadline (a warm-up hang)
    "crash",  # the engine process died: a verdict on vLLM (never used for the worker)
    "oom",  # killed for memory (container OOM-killed, SIGKILL we did not send, OOM in the log)
    "gpu-hang",  # ROCm GPU hang: SIGABRT and/or "HW Exception by GPU node", "GPU Hang", HSA error
    "request-error",  # a request failed (HTTP error, engine error)
    "check-failed",  # the engine ran; a declared check failed
    "timeout",  # the whole job or container overran its deadline
    "interrupted",  # Ctrl-C / SIGTERM
    "infra",  # the machine or container runtime failed; not the code under test
    "disk-full",  # no space left while writing results or logs (ENOSPC)
    "harness-error",  # an exception in the harness's own code: no verdict on vLLM
    "collection",  # pytest collected nothing or could not collect
    "image-missing",  # container image not found / not pullable (engine exit 125 on pull)
    "container-start",  # the container engine could not start the container (exit 125)
    "command-not-found",  # the worker command in the container is missing/not executable (126/127)
    "container-lost",  # the container vanished while the worker ran
    "model-missing",  # the hub snapshot (or a LoRA adapter) is not in the cache: fetch it first
    "registry",  # the image registry failed or stopped answering during a pull
    "worker-died",  # the harness's worker process died before writing the job's result
    "tests-missing",  # vLLM's tests tree for the vLLM that runs is not fetched: `harness tests fetch`
    "remote-code",  # the model repository's own code (trust_remote_code) does not load here
]
FAILURE_CLASSES: tuple[str, ...] = get_args(FailureClass)

# Failures that may be the machine's fault: one retry decides (see the module docstring).
# Not `timeout`: the whole worker overran the platform's deadline, and a retry would overrun
# the Buildkite step's; not `interrupted`: someone asked to stop.
RETRIED_CLASSES = frozenset({
    "startup-timeout", "oom", "gpu-hang", "infra", "container-lost", "container-start",
})
# Who caused a failure that repeats (the module docstring): the node it ran on, or the code under
# test. Every RETRIED class is exactly one of the two.
NODE_CAUSED_CLASSES = frozenset({"gpu-hang", "infra", "container-start", "container-lost"})
CODE_CAUSED_CLASSES = RETRIED_CLASSES - NODE_CAUSED_CLASSES  # startup-timeout, oom
# Classes that give no verdict on the code under test: status "error" (unless repeated on the
# retry, for the RETRIED ones). `harness-error` is here but not retried: a bug repeats.
INFRA_CLASSES = RETRIED_CLASSES | frozenset({
    "timeout", "interrupted", "collection", "harness-error", "disk-full", "image-missing",
    "command-not-found", "model-missing",
    # Not retried in-process: a registry that is down is down for the retry too, and twice is
    # still not a verdict on the case; the step's retry (exit 3) tries again later.
    "registry",
    # The worker (pytest + the harness plugin, not the engine) died without a result: `crash`
    # is kept for the engine dying, a verdict; this is none.
    "worker-died",
    # The vllm_tests tree is fetched before the job (`harness tests fetch`), never inside it.
    "tests-missing",
    # The pinned snapshot's remote code (Phi-4-multimodal's processor) does not import under the
    # image's transformers: the case's pin against tonight's stack, not vLLM's code. Not
    # retried: it fails the same way every time; `harness doctor` finds it in seconds.
    "remote-code",
})
VERDICT_CLASSES = frozenset(FAILURE_CLASSES) - INFRA_CLASSES  # crash, request-error, check-failed

# ---------------------------------------------------------------- upstream test nodes

# One vLLM test node's outcome in a vllm_tests result (pytest's, from its JUnit report).
NodeOutcome = Literal["passed", "failed", "error", "skipped", "xfailed"]
NODE_OUTCOMES: tuple[str, ...] = get_args(NodeOutcome)
NODE_FAILING = frozenset({"failed", "error"})  # what makes a tests case fail on a platform

# ---------------------------------------------------------------- checks

CheckOutcome = Literal["passed", "failed", "not-applicable", "error"]
CHECK_OUTCOMES: tuple[str, ...] = get_args(CheckOutcome)

# ---------------------------------------------------------------- exit codes

EXIT_OK = 0  # everything passed (or failed as expected)
EXIT_FAILED = 1  # a case failed, a regression, an output divergence, a strict xpass
EXIT_USAGE = 2  # bad input or command line
EXIT_INFRA = 3  # no verdict: infrastructure, harness error, missing results
EXIT_CODES = {EXIT_OK: "ok", EXIT_FAILED: "failed", EXIT_USAGE: "usage or input error",
              EXIT_INFRA: "infrastructure error"}

# Severity when several parts end differently: a failure outranks an infrastructure error (it is
# the more specific news), usage errors outrank both (nothing meaningful ran).
_SEVERITY = {EXIT_OK: 0, EXIT_INFRA: 1, EXIT_FAILED: 2, EXIT_USAGE: 3}


def severity(code: int) -> int:
    return _SEVERITY.get(code, len(_SEVERITY))


def worst_exit(codes: list[int] | tuple[int, ...]) -> int:
    return max(codes, key=severity, default=EXIT_OK)


def is_infra(failure_class: str | None) -> bool:
    return failure_class in INFRA_CLASSES


def is_retried(failure_class: str | None) -> bool:
    return failure_class in RETRIED_CLASSES


def is_node_caused(failure_class: str | None) -> bool:
    return failure_class in NODE_CAUSED_CLASSES


# ---------------------------------------------------------------- how a process ended

SIGABRT_EXITS = (-6, 134)  # killed by SIGABRT: Popen's -6, a shell's or container's 128+6
SIGKILL_EXITS = (-9, 137)
