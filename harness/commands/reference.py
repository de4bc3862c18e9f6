"""`harness reference --case FILE --results DIR --run-id RUN`: the `hf` reference result.

Runs the case's requests through Hugging Face transformers (fp32, greedy; CPU, or the GPU with
`--device cuda`, written as platform `hf-cuda`) on the same
weights the platform used and writes ``<results>/<run>/hf/<case>.json``. Then
``harness compare <results>/<run> --baseline hf --candidate cpu`` compares against it.
Transformers runs in its own process (``python -m harness.worker.reference``): in this
Python, or with ``--platform P`` in that platform's image, with its torch, transformers and GPUs
(a GPU agent's host has none of them).

Exit codes: 0 every case generated (or declares no reference), 2 usage or input error,
3 the reference failed for some case (its result says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE

REFERENCE_TIMEOUT_S = 3 * 3600  # a 3B model in fp32 on a CPU agent takes tens of minutes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--case", type=Path, action="append", required=True,
                        help="case file or directory (repeatable)")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--run-id", required=True, help="the run to add the reference to")
    parser.add_argument("--model-cache", type=Path, default=None,
                        help="where tiny models are built (default: $HARNESS_MODEL_CACHE or "
                             "~/.cache/vllm-harness/models, as `harness run`)")
    parser.add_argument("--model-source", choices=["tiny", "hub"], default=None,
                        help="the tiny offline recipe (as the cpu platform) or the hub model "
                             "(as GPU platforms; needs the weights in the HF cache); default: "
                             "the --platform's, else tiny")
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu (platform hf) or cuda[:N] (platform hf-cuda; "
                             "ROCm's torch calls its GPUs cuda too)")
    parser.add_argument("--platform", default=None,
                        help="run it in this container platform's image (its GPUs, its "
                             "transformers), as the worker runs")
    parser.add_argument("--platforms-file", type=Path, default=None,
                        help="default: cases/platforms.yaml")
    parser.add_argument("--image", default=None, help="with --platform: the image to run")
    parser.add_argument("--timeout", type=float, default=REFERENCE_TIMEOUT_S,
                        help="seconds for all the cases together (default %(default)g)")


def run(args: argparse.Namespace) -> int:
    from harness.commands.cli import DEFAULT_CASES
    from harness.runid import is_valid_run_id
    from harness.spec.case import PLATFORMS_FILE, load_cases, load_platforms

    if not (args.device == "cpu" or args.device == "cuda" or
            (args.device.startswith("cuda:") and args.device[5:].isdigit())):
        print(f"error: --device {args.device!r}: expected cpu, cuda or cuda:N", file=sys.stderr)
        return EXIT_USAGE
    if not is_valid_run_id(args.run_id):
        print(f"error: bad run id {args.run_id!r}", file=sys.stderr)
        return EXIT_USAGE
    missing = [str(p) for p in args.case if not p.exists()]
    if missing:
        print(f"error: no such case file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    # vllm_tests cases send no requests: there is nothing for transformers to generate
    cases = [c for c in load_cases(args.case) if c.model is not None]  # SpecError: exit 2
    if not cases:
        print("error: no case files found", file=sys.stderr)
        return EXIT_USAGE
    if args.platform is None:
        args.model_source = args.model_source or "tiny"
        return _reference(args, cases, None)
    args.platforms_file = args.platforms_file or DEFAULT_CASES / PLATFORMS_FILE
    platforms = load_platforms(args.platforms_file)  # SpecError: exit 2
    platform = platforms.get(args.platform)
    if platform is None or platform.launcher != "container":
        print(f"error: --platform {args.platform}: "
              + ("not in " + str(args.platforms_file) if platform is None else
                 "not a container platform (drop --platform to run here)"), file=sys.stderr)
        return EXIT_USAGE
    args.model_source = args.model_source or platform.model_source
    return _reference(args, cases, platform)


def _reference(args: argparse.Namespace, cases, platform) -> int:
    """Transformers in its own process with a deadline: in this Python (``platform`` None), or
    in the platform's image (the worker's container, the reference as its command). Its output
    is the reference directory's ``worker.log``; a reference that stopped early leaves a result
    per case saying why."""
    from harness.host.launch.ownership import make_dirs
    from harness.host.launch.start_worker import WorkerOutcome, run_worker
    from harness.proc import read_tail
    from harness.results import WORKER_LOG
    from harness.spec.platform import reference_platform_name

    out_dir = args.results / args.run_id / reference_platform_name(args.device)
    launch, blocked = None, ""
    if platform is None:
        job = {"cases": [str(c.source) for c in cases], "results": str(args.results),
               "run_id": args.run_id, "model_cache": str(args.model_cache or "") or None,
               "source": args.model_source, "device": args.device}
        out_dir.mkdir(parents=True, exist_ok=True)
        argv, env, cwd, on_stop = ([sys.executable, "-m", "harness.worker.reference",
                                    json.dumps(job)], None, None, None)
    else:
        from harness.host.execute import make_launch
        from harness.host.launch.local import WorkerRequest

        request = WorkerRequest(platform, [Path(c.source) for c in cases], args.platforms_file,
                                args.results, args.run_id, None, Path.cwd())
        launch = make_launch(request, image=args.image)
        make_dirs(out_dir, launch.user)
        blocked = launch.prepare()  # the image is missing or the pull failed: run nothing
        argv = launch.reference_argv(args.model_source, args.device)
        env, cwd, on_stop = launch.env(), launch.workdir(), launch.on_stop
    log_path = out_dir / WORKER_LOG
    if blocked:
        outcome = WorkerOutcome(None, False, False, 0.0, log_path, blocked)
    else:
        outcome = run_worker(argv, log_path, timeout_s=args.timeout, env=env, cwd=cwd,
                             on_stop=on_stop)
    failure = None
    if launch is not None:
        failure = launch.describe(outcome).get("failure")
        launch.release(failed=outcome.returncode != EXIT_OK)
    if not (outcome.timed_out or outcome.interrupted) and outcome.returncode in (EXIT_OK,
                                                                                 EXIT_INFRA):
        return outcome.returncode  # each case's result says how it went
    if outcome.timed_out:
        klass = "timeout"
        message = f"the reference did not finish within --timeout {args.timeout:g} s"
    elif outcome.interrupted:
        klass, message = "interrupted", "interrupted (Ctrl-C or SIGTERM)"
    else:  # not started (image or Python), the container lost or killed, the process died
        klass, message = failure or ("worker-died", blocked or outcome.start_error or
                                     f"the reference's process exited {outcome.returncode}")
    write_unfinished(cases, args, klass, message, read_tail(log_path))
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INFRA


def write_unfinished(cases, args: argparse.Namespace, failure_class: str, message: str,
                     output: str) -> None:
    """A result for each case the stopped reference left without one: nothing is lost."""
    from harness.plan import job_id
    from harness.results import LogInfo, Result, result_path, tail, write_result
    from harness.runinfo import now
    from harness.secrets import redact
    from harness.spec.platform import reference_platform_name

    platform = reference_platform_name(args.device)
    for case in cases:
        path = result_path(args.results, args.run_id, platform, case.id)
        if path.exists():
            continue
        write_result(path, Result(
            run_id=args.run_id, job_id=job_id(case.id, platform), case_id=case.id,
            platform=platform, status="error", failure_class=failure_class, message=message,
            log=LogInfo(tail=tail(redact(output))), finished_at=now()))
