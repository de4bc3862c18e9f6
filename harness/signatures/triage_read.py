"""What triage reads: the signatures of a run's result files, and of the history store's nights.

The store is read in one snapshot with two queries: every stored failure with a signature (and
its run, case, platform, node, commit), and the passes of the cases that failed (with their
node), which node-local needs. A year of nights is a few hundred thousand result rows, of which
only these are read.
"""

from __future__ import annotations

from pathlib import Path

from harness.history.db import Connection
from harness.history.storeread import load_nights
from harness.resultview import read_result_view
from harness.results import cycle_collection_paused, iter_result_files
from harness.signatures.triage import Night, Occurrence, Pass

GOOD = ("passed", "xfailed")
_FAILURES = """
SELECT u.run_id, u.platform, u.accelerator, c.case_id, s.node, s.gpu_arch, f.commit_sha,
       s.rule, s.sig_key, s.sig_class, s.line
FROM signatures s JOIN results r ON r.id = s.result_ref JOIN runs u ON u.id = r.run_ref
JOIN cases c ON c.id = r.case_ref JOIN fingerprints f ON f.id = r.fingerprint_id
WHERE s.rule IS NOT NULL"""
_PASSES = """
SELECT u.run_id, u.platform, c.case_id, s.node
FROM signatures s JOIN results r ON r.id = s.result_ref JOIN runs u ON u.id = r.run_ref
JOIN cases c ON c.id = r.case_ref
WHERE s.rule IS NULL AND s.node IS NOT NULL AND r.status IN (?, ?) AND r.case_ref IN (
    SELECT r2.case_ref FROM signatures s2 JOIN results r2 ON r2.id = s2.result_ref
    WHERE s2.rule IS NOT NULL)"""


def from_store(conn: Connection, last_nights: int | None = None
               ) -> tuple[list[Occurrence], list[Pass], list[Night]]:
    """The stored signatures (of the last ``last_nights`` nights; None: all of them)."""
    with conn.read(), cycle_collection_paused():
        stored = load_nights(conn)
        if last_nights is not None:
            stored = stored[-last_nights:] if last_nights > 0 else []
        nights = [Night(i, n.run_id, n.started_at) for i, n in enumerate(stored)]
        index = {n.run_id: n.index for n in nights}
        occurrences = [
            Occurrence(index[run], platform, accel, case, node, commit, rule, key or "", klass,
                       line or "", arch)
            for run, platform, accel, case, node, arch, commit, rule, key, klass, line
            in conn.execute(_FAILURES) if run in index]
        passes = [Pass(index[run], platform, case, node)
                  for run, platform, case, node in conn.execute(_PASSES, GOOD) if run in index]
    return occurrences, passes, nights


def from_runs(run_dirs: list[Path], first_index: int = 0
              ) -> tuple[list[Occurrence], list[Pass], list[Night]]:
    """The signatures in run directories' result files, each run one night (in the given
    order, after ``first_index`` earlier nights)."""
    occurrences: list[Occurrence] = []
    passes: list[Pass] = []
    nights: list[Night] = []
    with cycle_collection_paused():
        for offset, run_dir in enumerate(run_dirs):
            index = first_index + offset
            started: list[str] = []
            for path in iter_result_files(Path(run_dir)):
                result = read_result_view(path)
                started += [result.started_at] if result.started_at else []
                fp = result.fingerprint
                accelerator = fp.get("accelerator")
                commit = (fp.get("buildkite") or {}).get("commit") or fp.get("git_commit")
                sig = result.signature
                if sig is not None:
                    where = sig.where
                    occurrences.append(Occurrence(
                        index, result.platform, accelerator, result.case_id,
                        where.hostname or where.agent, commit, sig.rule, sig.key,
                        sig.failure_class, sig.line, where.gpu_arch))
                elif result.status in GOOD:
                    node = fp.get("hostname") or (fp.get("buildkite") or {}).get("agent_name")
                    passes.append(Pass(index, result.platform, result.case_id, node))
            nights.append(Night(index, Path(run_dir).name, min(started, default=None)))
    return occurrences, passes, nights
