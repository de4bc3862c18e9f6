"""How an engine or worker that exited on its own is classed: its log by the rulebook, then its
exit status. Used by the worker (engine exits) and the host (worker exits)."""

from __future__ import annotations

from harness.outcomes import SIGKILL_EXITS, VERDICT_CLASSES
from harness.signatures.scan import log_class


def classify_exit(returncode: int | None, log_text: str) -> str:
    """The class of an engine (or worker) that exited on its own with ``returncode``.

    What the log says comes from the rulebook (signatures.yaml: the one
    source of log-based classes): the first rule that matches names it, unless its class is a
    verdict (a crash is what any exit already is). So a GPU hang or fault wins (ROCm aborts
    after printing it; SIGABRT alone is any C++ abort, a crash), and OOM in the log is OOM. A
    SIGKILL we did not send is the kernel's OOM killer in practice. Retried classes get one
    more attempt (RETRIED_CLASSES), so a guess that is wrong by bad luck does not stand, and
    one that repeats becomes the case's failure.
    """
    found = log_class(log_text)
    if found is not None and found not in VERDICT_CLASSES:
        return found
    if returncode in SIGKILL_EXITS:
        return "oom"
    return "crash"
