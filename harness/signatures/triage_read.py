"""What triage reads: the signatures of a run's result files, and of the history store's nights.

The store is read in one snapshot with two queries: every stored failure with a signature (and
its run, case, platform, node, commit), and the passes of the cases that failed (with their
node), which node-local needs. A year of nights is a few hundred thousand result rows, of which
only these are read.
"""

from __future__ import annotations

from pathlib import Path

from harness.history.db import Connection
from harness.history.store import CHUNK
from harness.history.storeread import load_nights
from harness.resultview import read_result_view
from harness.results import cycle_collection_paused, iter_result_files
from harness.signatures.triage import Night, Occurrence, Pass

GOOD = ("passed", "xfailed")
# Index by index: the failures (signatures_rule), then the passes of their cases (signatures_case).
_FAILURES = """
SELECT s.run_ref, s.case_ref, u.platform, u.accelerator, c.case_id, s.node, s.gpu_arch,
       f.commit_sha, s.rule, s.sig_key, s.sig_class, s.line
FROM signatures s JOIN runs u ON u.id = s.run_ref JOIN cases c ON c.id = s.case_ref
JOIN results r ON r.id = s.result_ref JOIN fingerprints f ON f.id = r.fingerprint_id
WHERE s.rule IS NOT NULL"""
_PASSES = """SELECT s.run_ref, s.case_ref, s.node FROM signatures s
WHERE s.case_ref IN ({marks}) AND s.rule IS NULL AND s.node IS NOT NULL AND s.status IN (?, ?)"""


def from_store(conn: Connection, last_nights: int | None = None
               ) -> tuple[list[Occurrence], list[Pass], list[Night]]:
    """The stored signatures (of the last ``last_nights`` nights; None: all of them), in one
    snapshot of the store."""
    with conn.read(), cycle_collection_paused():
        return read_signatures(conn, last_nights)


def read_signatures(conn: Connection, last_nights: int | None = None
                    ) -> tuple[list[Occurrence], list[Pass], list[Night]]:
    """As ``from_store``, inside the caller's read transaction (the dashboard's)."""
    stored = load_nights(conn)
    if last_nights is not None:
        stored = stored[-last_nights:] if last_nights > 0 else []
    nights = [Night(i, n.run_id, n.started_at) for i, n in enumerate(stored)]
    index = {n.run_id: n.index for n in nights}
    runs = {ref: (index[n.run_id], platform) for n in stored if n.run_id in index
            for platform, ref in n.refs.items()}
    occurrences, cases = [], {}
    for run_ref, case_ref, platform, accel, case, node, arch, commit, rule, key, klass, line \
            in conn.execute(_FAILURES):
        if run_ref in runs:
            cases[case_ref] = case
            occurrences.append(Occurrence(runs[run_ref][0], platform, accel, case, node, commit,
                                          rule, key or "", klass, line or "", arch))
    passes = []
    refs = sorted(cases)
    for start in range(0, len(refs), CHUNK):
        chunk = refs[start:start + CHUNK]
        sql = _PASSES.format(marks=",".join("?" * len(chunk)))
        passes += [Pass(runs[run_ref][0], runs[run_ref][1], cases[case_ref], node)
                   for run_ref, case_ref, node in conn.execute(sql, (*chunk, *GOOD))
                   if run_ref in runs]
    return occurrences, passes, nights


def from_runs(run_dirs: list[Path], first_index: int = 0
              ) -> tuple[list[Occurrence], list[Pass], list[Night]]:
    """The signatures in run directories' result files, each run one night (in the given
    order, after ``first_index`` earlier nights)."""
    with cycle_collection_paused():
        return from_views([(Path(run_dir).name, [read_result_view(path) for path in
                                                 iter_result_files(Path(run_dir))])
                           for run_dir in run_dirs], first_index)


def from_views(runs: list[tuple[str, list]], first_index: int = 0
               ) -> tuple[list[Occurrence], list[Pass], list[Night]]:
    """The signatures of results already read (views or Results), as (run id, results) per
    night, in order."""
    occurrences: list[Occurrence] = []
    passes: list[Pass] = []
    nights: list[Night] = []
    for offset, (run_id, results) in enumerate(runs):
        index = first_index + offset
        started: list[str] = []
        for result in results:
            started += [result.started_at] if result.started_at else []
            fp = result.fingerprint
            buildkite = fp.get("buildkite") or {}
            sig = result.signature
            if sig is not None:
                where = sig.where
                occurrences.append(Occurrence(
                    index, result.platform, fp.get("accelerator"), result.case_id,
                    where.hostname or where.agent,
                    buildkite.get("commit") or fp.get("git_commit"), sig.rule, sig.key,
                    sig.failure_class, sig.line, where.gpu_arch))
            elif result.status in GOOD:
                passes.append(Pass(index, result.platform, result.case_id,
                                   fp.get("hostname") or buildkite.get("agent_name")))
        nights.append(Night(index, run_id, min(started, default=None)))
    return occurrences, passes, nights
