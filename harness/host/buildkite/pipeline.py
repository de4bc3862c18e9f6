"""The dynamic Buildkite pipeline: planned jobs in, pipeline documents out. Pure: no I/O.

Shape of a build (every arrow is a ``depends_on``):

    image-<p> (--build-images) -> run-<p> (one per platform, on its queue; maybe parallel)
    run-* -> reference-hf (--nightly --gpu-reference: transformers on a GPU agent; reference_step)
    run-<baseline>, run-<candidate>, reference-hf -> compare-<baseline>-vs-<candidate>
    run-*, compare-* -> nightly-history (--nightly)                          (allow_failure)

The build rule (harness.compare.verdicts): a case that fails on a candidate (ROCm) makes the
build red unless it is an expected failure with a reason, whatever the baseline (CUDA) did. So a
candidate's run step never soft-fails a failure (exit 1); a platform that is only ever a
baseline soft-fails its failures, which the compare step reports (as "fixed" or "both-fail").
Every run step soft-fails infrastructure (exit 3: the harness already retried infra-like
failures once, and a repeat is exit 1). A compare step depends only on run steps that are in
the pipeline: when the baseline platform has no step (an AMD-only organisation), it compares
against ``--baseline-run`` or reports the candidate alone, and never waits for an agent that
does not exist.

Commands are shell text that Buildkite interpolates at upload time: ``$BUILDKITE_BUILD_NUMBER``
is meant to be expanded then (it is the same in every job of the build, and artifact paths need
it), every other ``$`` is escaped as ``$$`` so the job's shell sees it. ``check_interpolation``
enforces exactly that.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any, Mapping, Sequence

from harness.host import images
from harness.host.buildkite.autobisect_steps import plan_command
from harness.host.buildkite.history_store import check_history_store
from harness.host.buildkite.reference_step import KEY as REFERENCE_KEY
from harness.host.buildkite.reference_step import PLATFORM as REFERENCE_PLATFORM
from harness.host.buildkite.reference_step import reference_platform, reference_step
from harness.host.buildkite.retry_results import earlier_results_command
from harness.host.buildkite.options import Comparison, PipelineOptions
from harness.host.buildkite.shard import useful_shards
from harness.host.buildkite.shell import AGENT_LOST, RESULTS, RUN_ID, Raw, sh
from harness.models.fetch import FETCH_TIMEOUT_S
from harness.host.buildkite.uploads import PipelineError, check_documents, split_uploads
from harness.outcomes import EXIT_FAILED, EXIT_INFRA, EXIT_USAGE
from harness.plan import Job
from harness.spec.platform import Platform, is_secret_name

TIMEOUT_MARGIN_MIN = 15  # harness run's own deadline fires first, so it can still write results
IMAGE_BUILD_TIMEOUT_MIN = 180
SMALL_STEP_TIMEOUT_MIN = 30
DASHBOARD = f"{RESULTS}/dashboard.html"
TEST_ENGINE_PLUGIN = "test-collector#v1.11.0"
# Platform names go into keys, paths and shell text unquoted: keep them to these characters.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,60}")


# ---------------------------------------------------------------- shell text


def _harness(options: PipelineOptions) -> list[Raw]:
    return [Raw(options.harness)]  # may be several words, e.g. ".venv/bin/python -m harness"


def _selection_args(options: PipelineOptions, keyword: bool = True) -> list[str]:
    out: list[str] = []
    if options.cases:
        out += ["--cases", options.cases]
    if options.platforms_file:
        out += ["--platforms-file", options.platforms_file]
    if options.keyword and keyword:
        out += ["-k", options.keyword]
    return out


def _run_dir() -> Raw:
    return Raw(f"{RESULTS}/{RUN_ID}")


def _agents(queue: str | None) -> dict[str, Any]:
    return {"agents": {"queue": queue}} if queue else {}


# ---------------------------------------------------------------- steps


def build_image(platform: Platform, options: PipelineOptions) -> Raw:
    """This build's image of a platform: <registry>/<namespace>/vllm-harness:<p>-build-<N>, so a
    run step runs what its own image step built (pulled on other agents), never a stale tag."""
    registry, namespace = images.settings(os.environ, options.registry, options.namespace)
    prefix = images.image_ref(registry, namespace, platform.name, "build-")
    return Raw(shlex.quote(prefix).replace("$", "$$") + "$BUILDKITE_BUILD_NUMBER")


def run_image(platform: Platform, options: PipelineOptions) -> str | Raw | None:
    given = dict(options.images).get(platform.name)
    if given:
        return given
    if options.build_images and platform.build is not None and platform.launcher == "container":
        return build_image(platform, options)
    return None


def image_step(platform: Platform, options: PipelineOptions) -> dict[str, Any]:
    assert platform.build is not None
    secret = [name for name in platform.build.args if is_secret_name(name)]
    if secret:
        raise PipelineError(f"platform {platform.name}: build arg {secret[0]} looks like a secret; "
                            "build args are written into the pipeline, pass secrets another way")
    # `harness image build`: --pull, BuildKit, tags by vLLM version and commit, then this
    # build's tag; pushed (every tag) for queues whose other agents pull it.
    argv: list[str | Raw] = [*_harness(options), "image", "build", "--platform", platform.name,
                             *_selection_args(options, keyword=False),
                             "--image", build_image(platform, options)]
    if options.registry:
        argv += ["--registry", options.registry]
    if options.namespace:
        argv += ["--namespace", options.namespace]
    if options.push_images:
        argv.append("--push")
    commands = [sh(*argv)]
    return {"label": f"image {platform.name}", "key": f"image-{platform.name}",
            "commands": commands, **_agents(platform.queue),
            "timeout_in_minutes": IMAGE_BUILD_TIMEOUT_MIN,
            "retry": {"automatic": [{"exit_status": AGENT_LOST, "limit": 2}]}}


def run_step(platform: Platform, jobs: Sequence[Job], options: PipelineOptions,
             baseline_only: bool) -> dict[str, Any]:
    shards = useful_shards(jobs, options.parallelism)
    argv: list[str | Raw] = [*_harness(options), "run", "--platform", platform.name,
                             "--run-id", Raw(RUN_ID), *_selection_args(options)]
    image = run_image(platform, options)
    if image is not None:
        argv += ["--image", image]
    elif platform.launcher == "container":  # a moving tag: tonight's, not this agent's copy
        argv += ["--pull", "always"]
    if shards > 1:
        argv += ["--shard-index", Raw('"$$BUILDKITE_PARALLEL_JOB"'),
                 "--shard-count", Raw('"$$BUILDKITE_PARALLEL_JOB_COUNT"')]
    # `harness run` exits 0-3 only (a GPU hang is classified inside it, and retried there):
    # Buildkite retries what the harness could not, a lost agent or an infrastructure exit.
    retry = [{"exit_status": AGENT_LOST, "limit": 2}, {"exit_status": EXIT_INFRA, "limit": 1}]
    soft = [EXIT_INFRA] + ([EXIT_FAILED] if baseline_only else [])
    step: dict[str, Any] = {
        "label": f"run {platform.name}" + (" %n" if shards > 1 else ""),
        "key": f"run-{platform.name}",
        "commands": [*_fetch_commands(platform, options),
                     *_tests_fetch(platform, jobs, image, options),
                     earlier_results_command(platform.name), sh(*argv)],
        **_agents(platform.queue),
        "timeout_in_minutes": run_step_timeout_min(platform),
        "retry": {"automatic": retry},
        "soft_fail": [{"exit_status": code} for code in sorted(soft)],
        "artifact_paths": [f"{RESULTS}/{RUN_ID}/{platform.name}/**/*"],
    }
    if shards > 1:
        step["parallelism"] = shards
    if options.build_images and platform.build is not None and platform.launcher == "container":
        step["depends_on"] = f"image-{platform.name}"
    return step


def run_budget_min(platform: Platform) -> int:
    """One `harness run` of the platform at its longest: the image pull's own deadline (a
    container platform may pull, `--pull always` or a missing image), then the worker's
    (``timeout_minutes``, which the in-process retry shares)."""
    pull = math.ceil(images.PULL_TIMEOUT_S / 60) if platform.launcher == "container" else 0
    return pull + platform.timeout_minutes


def run_step_timeout_min(platform: Platform) -> int:
    """The run step's timeout counts everything the step waits for, each with its own
    deadline: the model fetch (hub platforms), the run (pull + worker), and a margin so the
    harness's own deadlines fire first and it still writes results."""
    fetch = math.ceil(FETCH_TIMEOUT_S / 60) if platform.model_source == "hub" else 0
    return fetch + run_budget_min(platform) + TIMEOUT_MARGIN_MIN


def _fetch_commands(platform: Platform, options: PipelineOptions) -> list[str]:
    """Hub snapshots are fetched before the run (present ones are not fetched again), so the
    run's engine startup deadline never pays for a download."""
    if platform.model_source != "hub":
        return []
    return [sh(*_harness(options), "models", "fetch", "--platform", platform.name,
               *_selection_args(options))]


def _tests_fetch(platform: Platform, jobs: Sequence[Job], image, options) -> list[str]:
    """vllm_tests cases: the tests tree of the vLLM the platform's image runs, fetched before
    the run (a cached tree is not fetched again), never inside a job's deadline."""
    if not any(job.case.model is None for job in jobs):
        return []
    extra = ["--image", image] if image is not None else []
    return [sh(*_harness(options), "tests", "fetch", "--platform", platform.name, *extra,
               *_selection_args(options, keyword=False))]


def _download(platform: str) -> str:
    # "<platform>/*" finds the result files (they sit directly under the platform) whether the
    # artifact search reads "*" as one path segment or as any text.
    query = Raw(f'"{RESULTS}/{RUN_ID}/{platform}/*"')
    return (sh("buildkite-agent", "artifact", "download", query, ".") + " || "
            + sh("echo", f"harness: no {platform} results to download"))


def compare_step(comparison: Comparison, options: PipelineOptions,
                 in_pipeline: Sequence[str] = (), reference: str | None = None) -> dict[str, Any]:
    """Download the platforms' results, compare, annotate, and exit with compare's status.

    Depends only on the run steps of ``in_pipeline``: a baseline without a step comes from
    ``--baseline-run`` or is absent (the candidate is reported alone)."""
    c = comparison
    out = f"compare/{c.name}"
    present = [p for p in (c.baseline, c.candidate) if p in in_pipeline] if in_pipeline \
        else [c.baseline, c.candidate]
    extra = ["--baseline-run", options.baseline_run] if options.baseline_run else []
    # The nightly GPU reference (harness.host.buildkite.reference_step), when there is one.
    extra += ["--reference", reference] if reference else []
    compare = sh(*_harness(options), "compare", _run_dir(), "--baseline", c.baseline,
                 "--candidate", c.candidate, *extra, "--markdown", f"{out}.md",
                 "--junit", f"{out}.xml", "--json", f"{out}.json")
    annotate = sh("buildkite-agent", "annotate", "--context", c.context,
                  "--style", Raw('"$$harness_style"'))
    missing = (f'echo "**harness compare {c.baseline} vs {c.candidate}** wrote no report '
               '(exit status $$harness_status); see the step log."')
    return {
        "label": f"compare {c.baseline} vs {c.candidate}",
        "key": c.key,
        "depends_on": [{"step": f"run-{p}", "allow_failure": True} for p in present]
        + ([{"step": REFERENCE_KEY, "allow_failure": True}] if reference else []),
        "commands": [
            # The run directory exists even when no platform left results, so compare reports
            # them missing (infrastructure, exit 3) rather than a usage error.
            sh("mkdir", "-p", "compare", _run_dir()),
            *(_download(p) for p in [*present, *([reference] if reference else [])]),
            f"harness_status=0; {compare} || harness_status=$$?",
            'case "$$harness_status" in 0) harness_style=success ;; '
            f"{EXIT_INFRA}) harness_style=warning ;; *) harness_style=error ;; esac",
            # A failed annotation must not hide compare's verdict: report it and go on.
            f"if [ -s {out}.md ]; then {annotate} < {out}.md; else {missing} | {annotate}; fi"
            + " || " + sh("echo", "harness: could not post the annotation"),
            'exit "$$harness_status"',
        ],
        **_agents(options.queue),
        "timeout_in_minutes": SMALL_STEP_TIMEOUT_MIN,
        "retry": {"automatic": [{"exit_status": AGENT_LOST, "limit": 2}]},
        "soft_fail": [{"exit_status": EXIT_INFRA}],
        "artifact_paths": [f"{out}.*"],
        **_test_engine(f"{out}.xml", options),
    }


def _test_engine(junit: str, options: PipelineOptions) -> dict[str, Any]:
    """Buildkite's test-collector plugin, only where a token's variable is named: its hook
    exits 1 without a token (or without a matching file), which would fail every compare step
    of an organisation that has no Test Engine suite."""
    if not options.test_engine_token_env:
        return {}
    return {"plugins": [{TEST_ENGINE_PLUGIN: {
        "files": junit, "format": "junit",
        "api-token-env-name": options.test_engine_token_env}}]}


def nightly_step(platforms: Sequence[str], after: Sequence[str],
                 options: PipelineOptions, bisect_on: Sequence[Comparison] = ()
                 ) -> dict[str, Any]:
    """Add this build's results to the history store, start a bisect of each case newly broken
    on a candidate of ``bisect_on`` (harness autobisect), then render and link the dashboard.

    The store must outlive the build's checkout (agents clean it): ``--history-db`` names a
    persistent path on the agent that runs this step (pin it with ``--queue``).
    """
    db = (["--db-env", options.history_db_env] if options.history_db_env
          else ["--db", str(options.history_db)])
    link = sh("buildkite-agent", "annotate", "--context", "harness-nightly-dashboard", "--style",
              "info", f"Nightly dashboard: [{DASHBOARD}](artifact://{DASHBOARD})")
    return {
        "label": "nightly history and dashboard",
        "key": "nightly-history",
        "depends_on": [{"step": key, "allow_failure": True} for key in after],
        "commands": [
            sh("mkdir", "-p", _run_dir()),
            *(_download(p) for p in platforms),
            # A run refused by ingest (incomplete: exit 2) still gets a dashboard; the step then
            # soft-fails with ingest's status.
            f"harness_status=0; {sh(*_harness(options), 'ingest', _run_dir(), *db)}"
            " || harness_status=$$?",
            # bisects of what broke tonight; a failure here leaves the history step's status
            *(sh(*_harness(options), *plan_command(options, c.candidate, c.baseline,
                                                   _run_dir(), db))
              + " || " + sh("echo", f"harness: autobisect on {c.candidate} did not complete")
              for c in bisect_on),
            sh(*_harness(options), "dashboard", *db, "--out", DASHBOARD),
            f"{link} || " + sh("echo", "harness: could not post the dashboard link"),
            'exit "$$harness_status"',
        ],
        **_agents(options.queue),
        "timeout_in_minutes": SMALL_STEP_TIMEOUT_MIN,
        "retry": {"automatic": [{"exit_status": AGENT_LOST, "limit": 2}]},
        "soft_fail": [{"exit_status": EXIT_USAGE}, {"exit_status": EXIT_INFRA}],
        "artifact_paths": [DASHBOARD],
    }


def upload_step(part: int, count: int, options: PipelineOptions) -> dict[str, Any]:
    """Uploads part ``part`` of the pipeline (Buildkite takes at most 500 jobs per upload)."""
    generate = sh(*_harness(options), "pipeline", *options.argv(), "--part", str(part))
    return {
        "label": f"upload pipeline part {part} of {count}",
        "key": f"pipeline-part-{part}",
        "commands": ["set -o pipefail", f"{generate} | buildkite-agent pipeline upload"],
        **_agents(options.queue),
        "timeout_in_minutes": SMALL_STEP_TIMEOUT_MIN,
        "retry": {"automatic": [{"exit_status": AGENT_LOST, "limit": 2}]},
    }


def build_steps(jobs: Sequence[Job], platforms: Mapping[str, Platform],
                options: PipelineOptions) -> list[dict[str, Any]]:
    """Every step of the build, in dependency order (a step only depends on earlier ones)."""
    check_history_store(options)
    if options.parallelism < 1:
        raise PipelineError(f"--parallelism must be at least 1, got {options.parallelism}")
    by_platform: dict[str, list[Job]] = {}
    for job in jobs:
        by_platform.setdefault(job.platform.name, []).append(job)
    if not by_platform:
        raise PipelineError("no job matches the selection")
    for name in by_platform:
        if not _NAME_RE.fullmatch(name):
            raise PipelineError(f"platform name {name!r}: use letters, digits, '_', '.', '-'")
    for comparison in options.comparisons:
        for name in (comparison.baseline, comparison.candidate):
            if name not in platforms:
                raise PipelineError(f"--compare {comparison.baseline}:{comparison.candidate}: "
                                    f"unknown platform {name!r}; known: {sorted(platforms)}")
    # A comparison needs its candidate in the pipeline; its baseline may be absent.
    comparisons = [c for c in options.comparisons if c.candidate in by_platform]
    candidates = {c.candidate for c in comparisons}
    baselines = {c.baseline for c in comparisons}
    images = [name for name in by_platform if options.build_images
              and platforms[name].launcher == "container" and platforms[name].build is not None]
    steps = [image_step(platforms[name], options) for name in images]
    steps += [run_step(platforms[name], platform_jobs, options,
                       name in baselines and name not in candidates)
              for name, platform_jobs in by_platform.items()]
    gpu = reference_platform(comparisons, platforms, list(by_platform)) \
        if options.nightly and options.gpu_reference else None
    if gpu is not None:  # the nightly GPU reference, after the run steps
        steps.append(reference_step(gpu, [f"run-{name}" for name in by_platform], options))
    steps += [compare_step(c, options, list(by_platform), REFERENCE_PLATFORM if gpu else None)
              for c in comparisons]
    if options.nightly:
        after = [f"run-{name}" for name in by_platform] + [c.key for c in comparisons]
        bisect_on = [c for c in comparisons if platforms[c.candidate].launcher == "container"]
        steps.append(nightly_step(list(by_platform), after, options, bisect_on))
    return steps


def plan_pipeline(jobs: Sequence[Job], platforms: Mapping[str, Platform],
                  options: PipelineOptions) -> list[dict[str, Any]]:
    """The pipeline documents, validated (keys, dependencies, interpolation, upload size)."""
    documents = split_uploads(build_steps(jobs, platforms, options), options.max_jobs_per_upload,
                              lambda part, count: upload_step(part, count, options))
    check_documents(documents, options.max_jobs_per_upload)
    return documents
