"""Failure signatures: an ordered rulebook (signatures.yaml at the repository root) that names
the failure in a job's logs, groups it across jobs, nights and nodes, and tells a bad node from
a regression.

- ``rulebook``: load and validate the YAML (file:line: key: message, like cases).
- ``literals``: the literal text each rule's regex cannot match without (its prefilter).
- ``scan``: classify log text with one combined scan (and the naive per-rule scan it is
  measured against).
- ``attach``: a failed result's signature, from its logs, with where it ran.
- ``triage``: failures grouped by signature across a run or the history store.
"""
