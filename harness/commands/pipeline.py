"""``harness pipeline``: print the dynamic Buildkite pipeline (YAML) for the selected jobs.

    harness pipeline | buildkite-agent pipeline upload

Buildkite takes at most 500 jobs per upload; a larger pipeline is printed in parts: part 1 ends
with a step that runs ``harness pipeline ... --part 2 | buildkite-agent pipeline upload``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from harness.host.buildkite.pipeline import Comparison, PipelineOptions, plan_pipeline
from harness.host.buildkite.uploads import MAX_JOBS_PER_UPLOAD, job_count, render
from harness.commands.cli import DEFAULT_CASES, positive_int
from harness.outcomes import EXIT_OK, EXIT_USAGE
from harness.spec.settings import with_queues



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES, help="case directory or file")
    parser.add_argument("--platforms-file", type=Path, default=None,
                        help="default: platforms.yaml in the case directory")
    parser.add_argument("--platform", default=None,
                        help="comma-separated platforms (default: all in platforms.yaml)")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression")
    parser.add_argument("--nightly", action="store_true",
                        help="add the history ingest and dashboard step")
    parser.add_argument("--gpu-reference", action="store_true",
                        help="with --nightly: the hf reference on the candidate's GPU agent (needs "
                             "torch and transformers in that agent's Python)")
    parser.add_argument("--parallelism", type=positive_int, default=1,
                        help="parallel jobs per platform (capped at what can be non-empty)")
    parser.add_argument("--build-images", action="store_true",
                        help="build each container platform's image first (platform.build)")
    parser.add_argument("--push-images", action="store_true",
                        help="push built images, for queues with more than one agent")
    parser.add_argument("--image", dest="images", action="append", default=None,
                        metavar="[PLATFORM=]IMAGE",
                        help="run this image on the platform (a PR build, a nightly-<commit>); "
                             "a bare IMAGE applies to the only selected container platform")
    parser.add_argument("--registry", default=None, help="registry for built images")
    parser.add_argument("--namespace", default=None, help="namespace for built images")
    compare = parser.add_mutually_exclusive_group()
    compare.add_argument("--compare", dest="comparisons", action="append", default=None,
                         metavar="BASELINE:CANDIDATE",
                         help="a compare step, repeatable (default: cuda:rocm); it is left out "
                              "when either platform has no job")
    compare.add_argument("--no-compare", action="store_true", help="no compare step")
    parser.add_argument("--baseline-run", default=None, metavar="DIR",
                        help="a stored earlier run on the compare agent that supplies the "
                             "baseline when this build has none (e.g. an AMD-only organisation "
                             "with no CUDA agents); without it the candidate is reported alone")
    parser.add_argument("--queue", default=None,
                        help="agents queue of the compare/nightly/upload steps (default: none)")
    parser.add_argument("--history-db", default=None, metavar="PATH",
                        help="history store of the nightly step: an absolute path that outlives "
                             "the checkout on that agent (pin the agent with --queue)")
    parser.add_argument("--history-db-env", default=None, metavar="NAME",
                        help="or: the nightly agent's environment variable holding the store "
                             "(a postgresql:// URL); passed by name, never by value")
    parser.add_argument("--max-jobs-per-upload", type=positive_int, default=MAX_JOBS_PER_UPLOAD,
                        help=f"split into chained uploads above this (default: Buildkite's "
                             f"{MAX_JOBS_PER_UPLOAD})")
    parser.add_argument("--test-engine-token-env", default=None, metavar="NAME",
                        help="upload the compare step's JUnit file to Buildkite Test Engine "
                             "with the token in the compare agent's environment variable NAME "
                             "(e.g. BUILDKITE_ANALYTICS_TOKEN); without it, no upload")
    parser.add_argument("--harness-command", default="harness",
                        help="how steps invoke the harness, e.g. '.venv/bin/harness'")
    bisect = parser.add_argument_group("the nightly's own bisects (harness autobisect)")
    bisect.add_argument("--no-autobisect", action="store_true",
                        help="kill switch: the nightly starts no bisect (and says so)")
    bisect.add_argument("--bisect-max-age", type=positive_int, default=None, metavar="NIGHTS",
                        help="bisect only when the last good night is at most this old "
                             "(default 3)")
    bisect.add_argument("--bisect-budget", type=positive_int, default=None, metavar="RUNS",
                        help="engine runs all of a night's bisects may make (default 24)")
    bisect.add_argument("--bisect-tags-from", default=None, metavar="REGISTRY/REPO",
                        help="where the nightly tags are (default: the failing image's "
                             "repository)")
    bisect.add_argument("--bisect-tag-pattern", default=None, metavar="REGEX",
                        help="the nightly tags (default 'nightly-.*')")
    parser.add_argument("--part", type=positive_int, default=1,
                        help="which upload to print when the pipeline is split (1-based)")
    parser.add_argument("--bisect", nargs=argparse.REMAINDER, default=None, metavar="ARGS",
                        help="instead: one step running `harness bisect ARGS` on the platform's "
                             "queue (ARGS as harness bisect takes them; put --bisect last)")


def options_from(args: argparse.Namespace) -> PipelineOptions:
    if args.no_compare:
        comparisons: tuple[Comparison, ...] = ()
    elif args.comparisons:
        comparisons = tuple(Comparison.parse(text) for text in args.comparisons)
    else:
        comparisons = PipelineOptions.comparisons
    platforms = tuple(n.strip() for n in (args.platform or "").split(",") if n.strip())
    return PipelineOptions(
        platforms=platforms, keyword=args.keyword, nightly=args.nightly,
        gpu_reference=args.gpu_reference,
        parallelism=args.parallelism, build_images=args.build_images,
        push_images=args.push_images, comparisons=comparisons,
        images=tuple(_image_pair(text) for text in args.images or ()),
        registry=args.registry, namespace=args.namespace,
        cases=None if args.cases == DEFAULT_CASES else str(args.cases),
        platforms_file=str(args.platforms_file) if args.platforms_file else None,
        queue=args.queue, history_db=args.history_db, history_db_env=args.history_db_env,
        baseline_run=args.baseline_run,
        max_jobs_per_upload=args.max_jobs_per_upload, harness=args.harness_command,
        no_autobisect=args.no_autobisect, bisect_max_age=args.bisect_max_age,
        bisect_budget=args.bisect_budget, bisect_tags_from=args.bisect_tags_from,
        bisect_tag_pattern=args.bisect_tag_pattern,
        test_engine_token_env=_variable_name("--test-engine-token-env", args.test_engine_token_env))


def _variable_name(option: str, name: str | None) -> str | None:
    from harness.host.buildkite.uploads import PipelineError

    if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise PipelineError(f"{option} {name!r}: expected an environment variable's name")
    return name


def _image_pair(text: str) -> tuple[str, str]:
    platform, sep, image = text.partition("=")
    return (platform, image) if sep and "/" not in platform and ":" not in platform else ("", text)


def _bare_images(options: PipelineOptions, platforms) -> PipelineOptions:
    """A bare --image IMAGE names the image of the only container platform selected."""
    if all(platform for platform, _ in options.images):
        return options
    containers = [n for n in (options.platforms or platforms) if platforms[n].launcher == "container"]
    if len(containers) != 1:
        raise ValueError("--image IMAGE without PLATFORM= needs exactly one container platform "
                         f"selected (selected: {', '.join(containers) or 'none'})")
    pairs = tuple((p or containers[0], image) for p, image in options.images)
    return replace(options, images=pairs)


def documents_for(args: argparse.Namespace) -> tuple[PipelineOptions, list[dict]]:
    from harness.commands.cli import load_selection

    options = options_from(args)
    selection = argparse.Namespace(cases=args.cases, platforms_file=args.platforms_file,
                                   platform=list(options.platforms) or None,
                                   keyword=args.keyword)
    _, platforms, _, jobs = load_selection(selection)
    platforms = with_queues(platforms, os.environ)
    jobs = [replace(job, platform=platforms[job.platform.name]) for job in jobs]
    if not options.platforms:  # the settings' choice, written into the pipeline's own command
        options = replace(options, platforms=tuple(dict.fromkeys(j.platform.name for j in jobs)))
    options = _bare_images(options, platforms)
    unknown = [p for p, _ in options.images if p not in platforms]
    if unknown:
        raise ValueError(f"--image: unknown platform {unknown[0]!r}")
    return options, plan_pipeline(jobs, platforms, options)


def bisect_document(args: argparse.Namespace) -> dict:
    """The pipeline of `--bisect ARGS`: one step, its arguments checked as `harness bisect`
    would check them, on the platform's queue."""
    from harness.host.buildkite.bisect_step import bisect_step
    from harness.host.buildkite.uploads import PipelineError, check_documents
    from harness.commands.bisect import add_arguments as bisect_arguments, request_from
    from harness.spec.case import load_platforms

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, not argparse's usage text and exit
            raise PipelineError(f"--bisect: {message}")

    parser = Parser(prog="harness pipeline --bisect", add_help=False)
    bisect_arguments(parser)
    bisect_args = parser.parse_args(args.bisect)
    request = request_from(bisect_args)
    case_dir = bisect_args.cases if bisect_args.cases.is_dir() else bisect_args.cases.parent
    platforms = with_queues(load_platforms(bisect_args.platforms_file
                                           or case_dir / "platforms.yaml"), os.environ)
    if request.platform not in platforms:
        raise PipelineError(f"--bisect --platform {request.platform}: unknown platform; known: "
                            f"{sorted(platforms)}")
    document = {"steps": [bisect_step(request, platforms[request.platform],
                                      args.harness_command)]}
    check_documents([document], MAX_JOBS_PER_UPLOAD)
    return document


def run(args: argparse.Namespace) -> int:
    if args.bisect is not None:
        try:
            document = bisect_document(args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        sys.stdout.write(render(document, ["Generated by `harness pipeline --bisect ...`: do "
                                           "not edit."]))
        return EXIT_OK
    try:
        options, documents = documents_for(args)
    except ValueError as exc:  # PipelineError, unknown platform
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SyntaxError as exc:  # pytest's -k parser reports a bad expression this way
        print(f"error: bad -k expression {args.keyword!r}: {exc.msg}", file=sys.stderr)
        return EXIT_USAGE
    if args.part > len(documents):
        print(f"error: --part {args.part}: this pipeline has {len(documents)} part(s)",
              file=sys.stderr)
        return EXIT_USAGE
    document = documents[args.part - 1]
    command = " ".join(["harness", "pipeline", *options.argv()])
    header = [f"Generated by `{command}`: do not edit.",
              f"Part {args.part} of {len(documents)}."]
    sys.stdout.write(render(document, header))
    jobs = sum(job_count(step) for step in document["steps"])
    print(f"harness pipeline: part {args.part} of {len(documents)}, "
          f"{len(document['steps'])} steps, {jobs} jobs", file=sys.stderr)
    return EXIT_OK
