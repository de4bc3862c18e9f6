"""``harness bisect``: find the first bad image for a case on a platform, flake-aware, resumable.

    harness bisect --case C --platform P --good REF --bad REF (--candidates FILE | --tags-from REPO)

Each step is `harness run --platform P --image CANDIDATE` for the case, written as a normal run
under ``<results>/bisect-<id>/<step>/``; the search state is ``<results>/bisect-<id>/state.json``
and the report ``report.md`` beside it. Rerunning the same command continues the bisect.
Exit: 0 first bad found, 1 the ends did not verify (nothing to bisect), 2 usage, 3 interrupted
or infrastructure (rerun to continue).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.commands.cli import DEFAULT_CASES, positive_int
from harness.outcomes import EXIT_FAILED, EXIT_INFRA, EXIT_OK, EXIT_USAGE
from harness.spec.case import PLATFORMS_FILE

ANNOTATION_CONTEXT = "harness-bisect"
REPORT_FILE = "report.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--case", required=True, help="the case id")
    parser.add_argument("--platform", required=True, help="a container platform (rocm, cuda...)")
    parser.add_argument("--good", required=True, help="an image (or tag) where the case passes")
    parser.add_argument("--bad", required=True, help="an image (or tag) where it fails")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--candidates", type=Path, help="file: image references, oldest first")
    source.add_argument("--tags-from", metavar="REGISTRY/REPO",
                        help="the repository's tags, ordered by image creation time")
    parser.add_argument("--tag-pattern", default=None,
                        help="with --tags-from: only tags matching this regex (e.g. 'nightly-.*')")
    parser.add_argument("--confirmations", type=int, default=1,
                        help="extra failing runs before a candidate is called bad (default 1)")
    parser.add_argument("--confirm-at", choices=["each", "final"], default="each",
                        help="confirm every failing candidate (each, default), or only the bad "
                             "end and the candidate the search ends on (final: ceil(log2 n) + 4 "
                             "runs without flakes)")
    parser.add_argument("--no-verify-ends", action="store_true",
                        help="assume --good passes and --bad fails instead of running them first")
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES, help="case directory or file")
    parser.add_argument("--platforms-file", type=Path, default=None,
                        help=f"default: {PLATFORMS_FILE} in the case directory")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--id", dest="bisect_id", default=None,
                        help="bisect id (default: derived from case, platform, good and bad)")
    parser.add_argument("--engine", choices=["docker", "podman"], default=None,
                        help="container engine (overrides the platform's)")
    parser.add_argument("--pull", choices=["always", "missing", "never"], default="missing",
                        help="pull each candidate before its run (default: when missing here)")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write the Markdown report here")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as JSON here (always: bisect.json beside "
                             "the state)")
    parser.add_argument("--max-runs", type=positive_int, default=None,
                        help="stop after this many engine runs in this invocation (resumable)")
    parser.add_argument("--max-total-runs", type=positive_int, default=None,
                        help="stop once the bisect (this and earlier invocations together) made "
                             "this many engine runs: a budget a rerun does not renew")


def request_from(args: argparse.Namespace):
    from harness.bisect_command import BisectRequest

    return BisectRequest(
        args.case, args.platform, args.good, args.bad,
        candidates=str(args.candidates) if args.candidates else None, tags_from=args.tags_from,
        tag_pattern=args.tag_pattern, confirmations=args.confirmations,
        confirm_at=args.confirm_at, verify_ends=not args.no_verify_ends, pull=args.pull,
        cases=None if args.cases == DEFAULT_CASES else str(args.cases),
        platforms_file=str(args.platforms_file) if args.platforms_file else None,
        results=None if args.results == Path("results") else str(args.results),
        bisect_id=args.bisect_id, json_out=str(args.json) if args.json else None)


def run(args: argparse.Namespace) -> int:
    from harness.host.bisect.candidates import CandidateError
    from harness.host.bisect.registry import RegistryError
    from harness.host.bisect.state import StateError
    from harness.host.bisect.step import StepUsageError

    if args.confirmations < 0:
        print(f"error: --confirmations must be >= 0, not {args.confirmations}", file=sys.stderr)
        return EXIT_USAGE
    if args.tag_pattern and not args.tags_from:
        print("error: --tag-pattern goes with --tags-from", file=sys.stderr)
        return EXIT_USAGE
    try:
        setup = _set_up(args)
    except (CandidateError, StateError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RegistryError as exc:
        print(f"error: registry: {exc}", file=sys.stderr)
        return EXIT_INFRA
    except KeyboardInterrupt:
        print("interrupted before the first step", file=sys.stderr)
        return EXIT_INFRA
    try:
        return _search(args, *setup)
    except StepUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # between steps: every finished run is already in the state
        print("harness bisect: interrupted; rerun the same command to continue", file=sys.stderr)
        return EXIT_INFRA


def _set_up(args: argparse.Namespace):
    from harness.host.bisect.state import (BisectState, bisect_id, check_same_request, load_state,
                                      save_state, state_path)
    from harness.runid import is_valid_run_id
    from harness.spec.case import load_cases, load_platforms
    from harness.runinfo import now

    case_dir = args.cases if args.cases.is_dir() else args.cases.parent
    platforms_file = args.platforms_file or case_dir / PLATFORMS_FILE
    platforms = load_platforms(platforms_file)
    if args.platform not in platforms:
        raise ValueError(f"--platform {args.platform}: not in {platforms_file} "
                         f"(known: {', '.join(sorted(platforms))})")
    platform = platforms[args.platform]
    if platform.launcher != "container":
        raise ValueError(f"--platform {args.platform}: runs on the host ({platform.launcher}); "
                         "a bisect over images needs a container platform")
    cases = {case.id: case for case in load_cases([args.cases])}
    if args.case not in cases:
        raise ValueError(f"--case {args.case}: no such case in {args.cases} "
                         f"(known: {', '.join(sorted(cases))})")
    ident = args.bisect_id or bisect_id(args.case, args.platform, args.good, args.bad)
    if not is_valid_run_id(f"bisect-{ident}"):
        raise ValueError(f"--id {ident!r}: use letters, digits, '.', '_', '-'")
    bisect_dir = args.results / f"bisect-{ident}"
    source = f"file:{args.candidates}" if args.candidates else f"registry:{args.tags_from}"
    wanted = BisectState(id=ident, case=args.case, platform=args.platform, good=args.good,
                         bad=args.bad, confirmations=args.confirmations,
                         confirm_at=args.confirm_at, verify_ends=not args.no_verify_ends,
                         source=source, candidates=[])
    saved = load_state(bisect_dir)
    if saved is not None:
        check_same_request(saved, wanted, state_path(bisect_dir))
        print(f"harness bisect: continuing {state_path(bisect_dir)} "
              f"({len(saved.steps)} run(s) done)")
        state = saved
    else:
        state = wanted.model_copy(update={"candidates": _candidates(args), "started_at": now()})
        save_state(bisect_dir, state)
        print(f"harness bisect: {len(state.candidates)} candidates, state in "
              f"{state_path(bisect_dir)}")
    return state, bisect_dir, cases[args.case], platform, platforms_file


def _candidates(args: argparse.Namespace):
    from harness.host.bisect.candidates import by_creation_time, cut_range, read_candidates_file
    from harness.host.bisect.registry import registry_candidates

    if args.candidates:
        listed = read_candidates_file(args.candidates)
    else:
        listed = by_creation_time(registry_candidates(args.tags_from, args.tag_pattern))
    return cut_range(listed, args.good, args.bad)


def _search(args, state, bisect_dir: Path, case, platform, platforms_file: Path) -> int:
    from harness.host.bisect.report import Summary, terminal
    from harness.host.bisect.search import Done, decide
    from harness.host.bisect.state import Step, save_state
    from harness.host.bisect.step import STEP_MARGIN_S, StepRequest, run_step
    from harness.runinfo import now

    env = dict(os.environ)
    if env.get("HARNESS_MUTATIONS"):
        print("harness bisect: warning: HARNESS_MUTATIONS is set here and is passed into every "
              "container, overriding what the images declare", file=sys.stderr)
    command = request_from(args).command()
    ran = 0
    while True:
        decision = decide(state.config(), state.runs())
        if isinstance(decision, Done):
            break
        if args.max_runs is not None and ran >= args.max_runs:
            print(f"harness bisect: stopped after --max-runs {args.max_runs}; rerun to continue")
            break
        if args.max_total_runs is not None and len(state.steps) >= args.max_total_runs:
            print(f"harness bisect: stopped at --max-total-runs {args.max_total_runs} (its "
                  "budget of engine runs is spent)")
            break
        number = len(state.steps) + 1
        candidate = state.candidates[decision.candidate]
        name = _step_name(number, decision.purpose, candidate.ref)
        print(f"harness bisect: step {number}: {decision.purpose} {candidate.ref} -> "
              f"{bisect_dir / name}", flush=True)
        request = StepRequest(bisect_dir, name, case.id, Path(case.source), platform.name,
                              platforms_file, candidate.ref,
                              timeout_s=platform.timeout_minutes * 60 + STEP_MARGIN_S,
                              engine=args.engine, pull=args.pull)
        outcome = run_step(request, env)
        if outcome.outcome is None:
            print(f"harness bisect: interrupted during step {number}; nothing recorded for it. "
                  f"Rerun the same command to continue:\n  {command}", file=sys.stderr)
            _write_reports(args, state, decision, command, bisect_dir)
            return EXIT_INFRA
        ran += 1
        state.steps.append(Step(
            number=number, name=name, candidate=decision.candidate, purpose=decision.purpose,
            outcome=outcome.outcome, status=outcome.status, failure_class=outcome.failure_class,
            reason=outcome.reason, result=outcome.result, fingerprint=outcome.fingerprint,
            duration_s=outcome.duration_s, finished_at=now()))
        save_state(bisect_dir, state)
        print(f"harness bisect: step {number}: {candidate.ref}: {outcome.outcome}"
              + (f" ({outcome.reason})" if outcome.outcome != "pass" else ""), flush=True)
    print()
    print(terminal(Summary(state, decision, command)))
    _write_reports(args, state, decision, command, bisect_dir)
    if not isinstance(decision, Done):
        return EXIT_INFRA
    return EXIT_OK if decision.found else EXIT_FAILED


def _step_name(number: int, purpose: str, ref: str) -> str:
    import re

    from harness.host.bisect.candidates import tag_of

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", tag_of(ref) or ref.rsplit("/", 1)[-1]).strip("-.")
    return f"{number:02d}-{purpose}-{slug[:60]}"


def _write_reports(args, state, decision, command: str, bisect_dir: Path) -> None:
    from harness.host.bisect.report import Summary, markdown
    from harness.host.bisect.search import Done
    from harness.host.bisect.summary import JSON_FILE, summary_json
    from harness.host.buildkite.agent import Agent, AgentError, on_buildkite
    from harness.report.markdown import LinkStyle
    from harness.results import write_atomic

    style = LinkStyle.from_env(bisect_dir)

    def link_to(relative: str) -> str:
        return style.log_url(bisect_dir / relative)

    summary = Summary(state, decision, command)
    text = markdown(summary, link_to)
    write_atomic(bisect_dir / REPORT_FILE, text)
    data = json.dumps(summary_json(summary), indent=2) + "\n"
    write_atomic(bisect_dir / JSON_FILE, data)
    if args.json:
        write_atomic(args.json, data)
    if args.markdown:
        markdown_style = LinkStyle.from_env(args.markdown.parent)
        write_atomic(args.markdown, markdown(summary, lambda rel: markdown_style.log_url(
            bisect_dir / rel)))
    if on_buildkite():
        done = decision if isinstance(decision, Done) else None
        level = "success" if done and done.found else ("error" if done else "warning")
        try:
            Agent().annotate(text, f"{ANNOTATION_CONTEXT}-{state.id}"[:100], level)
        except AgentError as exc:
            print(f"harness bisect: could not post the annotation: {exc}", file=sys.stderr)
