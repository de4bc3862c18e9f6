"""``harness autobisect``: the nightly's own bisects of what broke tonight.

    harness autobisect plan --run-dir results/build-N (--db PATH|URL | --db-env NAME)
        --platform rocm [--baseline cuda] [--bisect-max-age 3] [--bisect-budget 24] ...
    harness autobisect record --json results/bisect-<id>/bisect.json (--db ... | --db-env ...)

``plan`` (in the nightly's history step, after ingest) decides (harness.host.bisect.autoplan), records
each bisect it starts and each refusal in the history store, uploads a bisect step per case
(harness.host.buildkite.autobisect_steps) and posts the ``harness-autobisect`` annotation saying what
it started and what it refused and why; it writes ``<run-dir>/autobisect-<platform>.json``.
``record`` stores a finished bisect's result. Exit: 0 done, 2 usage, 3 store, registry or agent
failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.commands.cli import DEFAULT_CASES, positive_int
from harness.history.target import add_store_arguments, on_store
from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE
from harness.spec.case import PLATFORMS_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.host.bisect.autoplan import (DEFAULT_BUDGET_RUNS, DEFAULT_MAX_AGE_NIGHTS,
                                         DEFAULT_TAG_PATTERN, KILL_SWITCH_ENV)

    parser.description = __doc__.splitlines()[0]
    sub = parser.add_subparsers(dest="action", required=True)
    plan = sub.add_parser("plan", help="decide, record, upload the bisect steps, annotate")
    add_store_arguments(plan)
    plan.add_argument("--run-dir", type=Path, required=True, help="tonight's run (ingested)")
    plan.add_argument("--platform", default="rocm", help="the candidate platform (default rocm)")
    plan.add_argument("--baseline", default=None, help="the baseline platform (cuda)")
    plan.add_argument("--no-autobisect", action="store_true",
                      help=f"kill switch (also: {KILL_SWITCH_ENV}=off in the environment)")
    plan.add_argument("--bisect-max-age", type=positive_int, default=DEFAULT_MAX_AGE_NIGHTS,
                      help="the last good night at most this many nights old")
    plan.add_argument("--bisect-budget", type=positive_int, default=DEFAULT_BUDGET_RUNS,
                      help="engine runs all of tonight's bisects may make")
    plan.add_argument("--bisect-tags-from", default=None, metavar="REGISTRY/REPO")
    plan.add_argument("--bisect-tag-pattern", default=DEFAULT_TAG_PATTERN, metavar="REGEX")
    plan.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    plan.add_argument("--platforms-file", type=Path, default=None)
    plan.add_argument("--queue", default=None, help="queue of the steps that record results")
    plan.add_argument("--harness-command", default="harness")
    record = sub.add_parser("record", help="store a finished bisect's result")
    add_store_arguments(record)
    record.add_argument("--json", type=Path, required=True, help="the bisect's bisect.json")


def run(args: argparse.Namespace) -> int:
    # a store the nightly step cannot open is the night's infrastructure, not a usage error
    return on_store(args, lambda conn: _plan(args, conn) if args.action == "plan"
                    else _record(args, conn), open_failed=EXIT_INFRA)


def _record(args: argparse.Namespace, conn) -> int:
    from harness.history.bisects import finish

    try:
        data = json.loads(args.json.read_text(encoding="utf-8"))
        ident, status = str(data["id"]), str(data["status"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {args.json}: not a bisect result ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return EXIT_USAGE
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if not finish(conn, ident, status, stamp, int(data.get("engine_runs") or 0),
                  str(data.get("headline") or ""), json.dumps(data, sort_keys=True)):
        print(f"harness autobisect: {ident} was not planned by a nightly: nothing recorded")
        return EXIT_OK
    print(f"harness autobisect: recorded {ident}: {status}: {data.get('headline', '')}")
    return EXIT_OK


def _plan(args: argparse.Namespace, conn) -> int:
    from harness.host.bisect.autoinput import (load_observations, read_tags, repositories,
                                          with_attempts)
    from harness.host.bisect.autoplan import Settings, kill_switch, plan
    from harness.host.bisect.autoreport import (ANNOTATION_CONTEXT, annotation_style, plan_json,
                                           plan_markdown)
    from harness.history.bisects import load_records
    from harness.results import write_atomic

    run_id = args.run_dir.name
    settings = Settings(
        platform=args.platform, baseline=args.baseline, max_age_nights=args.bisect_max_age,
        budget_runs=args.bisect_budget, tags_from=args.bisect_tags_from,
        tag_pattern=args.bisect_tag_pattern,
        off=kill_switch(dict(os.environ), args.no_autobisect),
        cases=None if args.cases == DEFAULT_CASES else str(args.cases),
        platforms_file=str(args.platforms_file) if args.platforms_file else None)
    try:
        nights, series, baseline = load_observations(conn, args.platform, args.baseline, run_id)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    series = with_attempts(series, args.run_dir, args.platform)
    tags = {} if settings.off or not series else read_tags(
        repositories(series, settings.tags_from), settings.tag_pattern)
    with conn.read():
        records = load_records(conn, series)
    now = datetime.now(timezone.utc)
    decided = plan(settings, nights, series, baseline, tags, records, now)
    code = _upload(args, decided, settings)
    _store(conn, decided, settings, run_id, now)
    text = plan_markdown(decided, settings, run_id)
    write_atomic(args.run_dir / f"autobisect-{args.platform}.json",
                 json.dumps(plan_json(decided, settings, run_id), indent=2) + "\n")
    print(text)
    if decided.bisects or decided.refusals:  # a quiet night posts nothing
        _annotate(text, f"{ANNOTATION_CONTEXT}-{args.platform}", annotation_style(decided))
    return code


def _store(conn, decided, settings, run_id: str, now: datetime) -> None:
    from harness.history.bisects import BisectRecord, add_records

    stamp = now.isoformat(timespec="seconds")
    add_records(conn, [
        *(BisectRecord(b.bisect_id, b.case_id, settings.platform, b.signature, b.good.tag,
                       b.bad.tag, "running", run_id, stamp, max_runs=b.max_runs)
          for b in decided.bisects),
        *(BisectRecord(f"refused-{run_id}-{r.case_id}-{settings.platform}", r.case_id,
                       settings.platform, "", "", "", "refused", run_id, stamp,
                       reason=f"{r.kind}: {r.reason}") for r in decided.refusals)])


def _upload(args: argparse.Namespace, decided, settings) -> int:
    """The bisect steps into this build. Steps that cannot be uploaded are not started: each
    becomes a refusal (kind ``upload``, with the command to run by hand) and no bisect is
    recorded as running."""
    from harness.host.buildkite.agent import Agent, AgentError
    from harness.host.buildkite.autobisect_steps import bisect_steps
    from harness.host.buildkite.uploads import PipelineError, check_documents, render
    from harness.spec.settings import SettingError, with_queues
    from harness.spec.case import SpecError, load_platforms

    if not decided.bisects:
        return EXIT_OK
    case_dir = args.cases if args.cases.is_dir() else args.cases.parent
    try:  # the organisation's queue for it (HARNESS_QUEUE_<PLATFORM>), as `harness pipeline`
        platform = with_queues(load_platforms(args.platforms_file or case_dir / PLATFORMS_FILE),
                               os.environ)[args.platform]
    except (SpecError, SettingError, KeyError) as exc:
        return _not_uploaded(decided, f"--platform {args.platform}: {exc}", EXIT_USAGE)
    db, db_env = args.db, args.db_env
    steps = [step for b in decided.bisects for step in bisect_steps(
        b, platform, args.harness_command, str(args.run_dir.parent), db, db_env, args.queue)]
    document = {"steps": steps}
    try:
        check_documents([document], len(steps) + 1)
        uploaded = Agent().pipeline_upload(render(document, ["Uploaded by `harness autobisect "
                                                             "plan`"]))
    except (AgentError, PipelineError) as exc:
        return _not_uploaded(decided, str(exc), EXIT_INFRA)
    if not uploaded:  # not on Buildkite: the commands to run by hand are in the plan file
        return _not_uploaded(decided, "not on Buildkite (BUILDKITE unset): run the command "
                             "in the plan file by hand", EXIT_OK)
    return EXIT_OK


def _not_uploaded(decided, why: str, code: int) -> int:
    from harness.host.bisect.autoplan import Refusal

    print(f"harness autobisect: the bisect steps were not uploaded: {why}", file=sys.stderr)
    decided.refusals += [Refusal(b.case_id, "upload", f"not started: {why}; by hand: "
                                 f"{b.request.command()}") for b in decided.bisects]
    decided.bisects.clear()
    return code


def _annotate(text: str, context: str, style: str) -> None:
    from harness.host.buildkite.agent import Agent, AgentError

    try:
        Agent().annotate(text, context, style)
    except AgentError as exc:
        print(f"harness autobisect: could not post the annotation: {exc}", file=sys.stderr)
