"""pytest plugin: case YAML files become test items (pytest's "non-python tests" pattern).

So ``-k``, ``-x``, xdist and ``--junitxml`` work for free. Active only with
``--harness-platform``; load it with ``-p harness.worker.plugin``.
"""

from __future__ import annotations

import atexit
import signal
from pathlib import Path

import pytest

from harness import proc
from harness.plan import plan_job
from harness.outcomes import EXIT_INFRA
from harness.results import DiskFull, Result, not_applicable_line
from harness.secrets import redact
from harness.spec.case import PLATFORMS_FILE, QUARANTINE_FILE, SpecError, load_case, load_platforms
from harness.worker.engine import EnginePool
from harness.worker.job import RunContext, run_job
from harness.worker.vllm_tests import run_tests_item
from harness.worker.progress import MODES, Progress

POOL_KEY = pytest.StashKey[EnginePool]()
CTX_KEY = pytest.StashKey[RunContext]()
PROGRESS_KEY = pytest.StashKey[Progress]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "vLLM cross-platform harness")
    group.addoption("--harness-platform", help="run case YAML files on this platform")
    group.addoption("--harness-platforms-file", default=None,
                    help="platforms.yaml (default: beside the case files)")
    group.addoption("--harness-results", default="results", help="results directory")
    group.addoption("--harness-run-id", default=None, help="run id (default: a timestamp)")
    group.addoption("--harness-model-cache", default=None,
                    help="where tiny offline models are built (default: $HARNESS_MODEL_CACHE)")
    group.addoption("--harness-vllm-tests", default=None,
                    help="vLLM tests trees for vllm_tests cases (harness.testtree)")
    group.addoption("--harness-progress", default="off", choices=MODES,
                    help="live progress lines: tty, ci, buildkite (log groups) or off")
    group.addoption("--harness-stream-engine-log", action="store_true",
                    help="copy the engine's log to the output as it is written")


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("harness_platform"):
        return
    refuse_xdist_on_gpus(config)
    from harness.runid import new_run_id

    from harness.models import default_cache_root

    cache = config.getoption("harness_model_cache") or default_cache_root()
    config.stash[CTX_KEY] = RunContext(
        results_dir=Path(config.getoption("harness_results")),
        run_id=config.getoption("harness_run_id") or new_run_id(),
        repo=Path(config.rootpath), model_cache=Path(cache),
        tests_root=Path(tests) if (tests := config.getoption("harness_vllm_tests")) else None)
    config.stash[POOL_KEY] = EnginePool()
    config.stash[PROGRESS_KEY] = Progress(
        config.getoption("harness_progress"), write=_line_writer(config),
        stream_log=config.getoption("harness_stream_engine_log"), redact=redact)
    atexit.register(proc.stop_all)
    # SIGTERM (Buildkite cancel, `docker stop`) unwinds like Ctrl-C: results get written.
    signal.signal(signal.SIGTERM, proc.raise_interrupt)


def _line_writer(config: pytest.Config):
    """Progress lines through pytest's terminal reporter, so they start on a fresh line after
    pytest's own output (the worker runs with --capture=no: nothing in between is captured).
    Looked up at each write: the reporter registers after this plugin's configure."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print(line, flush=True)
            return
        reporter.write_line(line)
        reporter._tw.flush()

    return write


XDIST_ON_GPU = ("pytest-xdist (-n) is refused on GPU platforms: every worker would start its "
                "own engine on the same GPUs. Run one worker per GPU set instead (`harness run "
                "--platform {name} --gpus 0` and `--gpus 1`, or Buildkite parallel jobs with "
                "`gpus_per_job`), each with its own results.")


def refuse_xdist_on_gpus(config: pytest.Config) -> None:
    """Each xdist worker would start an engine sized for the whole GPU (gpu_memory_utilization):
    two on one GPU fail or starve, so -n is refused there (CPU platforms may use it)."""
    # The controller has -n; its workers have `workerinput`. (Not PYTEST_XDIST_WORKER: a
    # harness run started from inside someone else's xdist worker inherits that variable.)
    if not (config.getoption("numprocesses", None) or hasattr(config, "workerinput")):
        return
    name = config.getoption("harness_platform")
    path = config.getoption("harness_platforms_file")
    if path is None:
        files = [Path(arg.split("::")[0]) for arg in config.args]
        path = next(((f if f.is_dir() else f.parent) / PLATFORMS_FILE for f in files), None)
    try:
        platform = load_platforms(path).get(name) if path else None
    except SpecError:
        return  # reported at collection, with its file and line
    if platform is not None and platform.accelerator != "cpu":
        raise pytest.UsageError(XDIST_ON_GPU.format(name=name))


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.close()


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if not parent.config.getoption("harness_platform"):
        return None
    if file_path.suffix in (".yaml", ".yml") and file_path.name not in (PLATFORMS_FILE,
                                                                       QUARANTINE_FILE):
        return CaseFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    # The engine stays up only when the next job will reuse it; otherwise the job stops it
    # and records how long that took.
    if isinstance(item, CaseItem):
        item.keep_engine = (isinstance(nextitem, CaseItem)
                            and nextitem.job.engine_key == item.job.engine_key)
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Jobs sharing an engine run back to back, so the pool can reuse one engine.
    items.sort(key=lambda item: item.job.engine_key if isinstance(item, CaseItem) else "")


class CaseFile(pytest.File):
    def collect(self):
        config = self.config
        platforms_file = (config.getoption("harness_platforms_file")
                          or self.path.parent / PLATFORMS_FILE)
        try:
            platforms = load_platforms(platforms_file)
            case = load_case(self.path)
        except SpecError as exc:
            raise self.CollectError(str(exc)) from None
        name = config.getoption("harness_platform")
        if name not in platforms:
            raise self.CollectError(f"unknown platform {name!r}; known: {sorted(platforms)}")
        job = plan_job(case, platforms[name])
        yield CaseItem.from_parent(self, name=f"{case.id}[{name}]", job=job)


class CaseFailed(Exception):
    def __init__(self, result: Result):
        self.result = result
        super().__init__(result.message)


class CaseItem(pytest.Item):
    def __init__(self, *, job, **kwargs):
        super().__init__(**kwargs)
        self.job = job
        self.keep_engine = False
        # Tags are -k keywords (as in `harness plan -k`), not markers that need registering.
        self.extra_keyword_matches.update(job.case.tags)


    def runtest(self) -> None:
        ctx = self.config.stash[CTX_KEY]
        try:
            if self.job.case.model is None:  # a vllm_tests case: vLLM's own tests, no engine
                result = run_tests_item(self.job, ctx, self.config.stash[PROGRESS_KEY])
            else:
                result = run_job(self.job, ctx, self.config.stash[POOL_KEY],
                                 self.config.stash[PROGRESS_KEY], keep_engine=self.keep_engine)
        except DiskFull as exc:  # the results already written stay; say why the run stops
            pytest.exit(f"harness: disk full: {exc}", returncode=EXIT_INFRA)
        self.user_properties.append(("status", result.status))
        self.user_properties.append(("failure_class", result.failure_class or ""))
        if not_applicable_line(result):  # pytest's own JUnit shows what did not run, too
            self.user_properties.append(("not_applicable", not_applicable_line(result)))
        if result.status == "skipped":
            pytest.skip(result.message)
        if result.status == "xfailed":
            pytest.xfail(f"{result.expect.reason} ({result.message})")
        if result.status == "xpassed" and not result.expect.strict:
            return
        if result.status != "passed":
            raise CaseFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CaseFailed):
            result = excinfo.value.result
            lines = [f"{result.job_id}: {result.status} ({result.failure_class or '-'})",
                     result.message]
            lines += [f"  {c.name}: {c.outcome}: {c.message}" for c in result.checks
                      if c.outcome in ("failed", "error")]
            if result.log.tail:
                lines += ["--- log tail ---", *result.log.tail.splitlines()[-25:]]
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, self.name
