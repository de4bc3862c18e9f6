"""Who is to blame when a retried job fails the same way again: the code under test or the node.

Pure: it reads two results' classes and node identities (hostname and Buildkite agent name,
from each result's fingerprint) and says what the job's status and message become. The rule's
words are in ``harness.outcomes`` (NODE_CAUSED_CLASSES, CODE_CAUSED_CLASSES):

- a code-caused class twice: the case's failure (``failed``, red), wherever it ran;
- a node-caused class twice on the same node: still the node's (``error``, exit 3), the node
  named, so that Buildkite's retry, which can land on another agent, decides;
- a node-caused class on two different nodes: the case's failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.outcomes import is_node_caused, is_retried


@dataclass(frozen=True)
class Node:
    hostname: str | None
    agent: str | None

    def __str__(self) -> str:
        host = f"host {self.hostname or 'unknown'}"
        return f"{host} (agent {self.agent})" if self.agent else host

    def same_as(self, other: "Node") -> bool:
        """Unknown on either side counts as the same node: without evidence of two nodes the
        failure stays the node's (no verdict), never a red one."""
        pairs = [(a, b) for a, b in ((self.hostname, other.hostname), (self.agent, other.agent))
                 if a and b]
        return all(a == b for a, b in pairs)


def node_of(fingerprint: dict[str, Any]) -> Node:
    buildkite = fingerprint.get("buildkite") or {}
    return Node(fingerprint.get("hostname") or None, buildkite.get("agent_name") or None)


def repeat_update(first, second) -> dict[str, Any]:
    """The fields of ``second`` (the later attempt) that the repeat rule changes, given the
    earlier attempt ``first``; empty when the rule does not apply (different classes, a pass,
    a class that is not retried)."""
    klass = second.failure_class
    if klass != first.failure_class or not is_retried(klass) or second.status != "error":
        return {}
    one, two = node_of(first.fingerprint), node_of(second.fingerprint)
    if is_node_caused(klass) and one.same_as(two):
        return {"message": f"{klass} on both attempts on {two}: the node's fault, not a verdict "
                           f"on the case (Buildkite's retry may run it elsewhere): "
                           f"{second.message}"}
    status = "xfailed" if second.expect.outcome == "xfail" else "failed"
    where = (f"on two nodes ({one}; {two})" if is_node_caused(klass)
             else f"on both attempts (retried once, {two})")
    return {"status": status, "message": f"{klass} {where}: {second.message}"}
