"""What ``harness pipeline`` was asked for (``PipelineOptions``) and its comparisons. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from harness.host.buildkite.uploads import MAX_JOBS_PER_UPLOAD, PipelineError
from harness.proc import flag_words


@dataclass(frozen=True)
class Comparison:
    baseline: str
    candidate: str

    @classmethod
    def parse(cls, text: str) -> "Comparison":
        baseline, sep, candidate = text.partition(":")
        if not sep or not baseline or not candidate or baseline == candidate:
            raise PipelineError(f"--compare {text!r}: expected BASELINE:CANDIDATE, e.g. cuda:rocm")
        return cls(baseline, candidate)

    @property
    def name(self) -> str:
        return f"{self.baseline}-vs-{self.candidate}"

    @property
    def key(self) -> str:
        return f"compare-{self.name}"

    @property
    def context(self) -> str:
        """The annotation context: stable, so a retried compare step replaces its annotation."""
        return f"harness-compare-{self.name}"


@dataclass(frozen=True)
class PipelineOptions:
    """What ``harness pipeline`` was asked for; ``argv()`` gives the same request back."""

    platforms: tuple[str, ...] = ()  # empty: every platform in platforms.yaml
    keyword: str | None = None
    nightly: bool = False
    # the nightly hf reference on a GPU agent (harness.host.buildkite.reference_step): opt-in, as it
    # needs torch and transformers in that agent's Python, which the README's GPU agent lacks
    gpu_reference: bool = False
    parallelism: int = 1
    build_images: bool = False
    push_images: bool = False
    images: tuple[tuple[str, str], ...] = ()  # (platform, image) given by --image: run those
    registry: str | None = None  # where built images are named (harness.host.images settings)
    namespace: str | None = None
    comparisons: tuple[Comparison, ...] = (Comparison("cuda", "rocm"),)
    cases: str | None = None  # passed on to `harness run` when not the default
    platforms_file: str | None = None
    queue: str | None = None  # agents queue of the orchestrating steps (compare, nightly, upload)
    history_db: str | None = None  # the nightly store: a lasting path on the nightly agent
    history_db_env: str | None = None  # or the agent's environment variable holding it (a URL)
    baseline_run: str | None = None  # a stored run supplying an absent baseline (compare)
    max_jobs_per_upload: int = MAX_JOBS_PER_UPLOAD
    harness: str = "harness"
    # Test Engine upload of the compare step's JUnit file: opt-in, by naming the environment
    # variable (on the compare agent) that holds a Test Engine token. The plugin's hook fails
    # the step when its token is unset, so an organisation without Test Engine gets no plugin.
    test_engine_token_env: str | None = None
    # the nightly's own bisects (harness.host.buildkite.autobisect_steps); None: autoplan's default
    no_autobisect: bool = False  # the kill switch as a pipeline setting
    bisect_max_age: int | None = None
    bisect_budget: int | None = None
    bisect_tags_from: str | None = None
    bisect_tag_pattern: str | None = None

    def argv(self) -> list[str]:
        """``harness pipeline``'s own arguments for these options (round trip): only what
        differs from the defaults."""
        compares: list[tuple[str, object]] = []
        if self.comparisons != PipelineOptions.comparisons:
            compares = [("--compare", f"{c.baseline}:{c.candidate}") for c in self.comparisons]
            compares += [("--no-compare", not self.comparisons)]
        return flag_words(
            ("--cases", self.cases), ("--platforms-file", self.platforms_file),
            ("--platform", ",".join(self.platforms)), ("-k", self.keyword),
            ("--nightly", self.nightly), ("--gpu-reference", self.gpu_reference),
            ("--parallelism", self.parallelism if self.parallelism != 1 else None),
            ("--build-images", self.build_images), ("--push-images", self.push_images),
            *(("--image", f"{platform}={image}") for platform, image in self.images),
            ("--registry", self.registry), ("--namespace", self.namespace), *compares,
            ("--queue", self.queue), ("--history-db", self.history_db),
            ("--baseline-run", self.baseline_run), ("--history-db-env", self.history_db_env),
            ("--max-jobs-per-upload", self.max_jobs_per_upload
             if self.max_jobs_per_upload != MAX_JOBS_PER_UPLOAD else None),
            ("--harness-command", self.harness if self.harness != "harness" else None),
            ("--test-engine-token-env", self.test_engine_token_env)) + self.autobisect_argv()

    def autobisect_argv(self) -> list[str]:
        """The auto-bisect settings of ``harness pipeline``, as it takes them (round trip)."""
        return flag_words(("--no-autobisect", self.no_autobisect),
                          ("--bisect-max-age", self.bisect_max_age),
                          ("--bisect-budget", self.bisect_budget),
                          ("--bisect-tags-from", self.bisect_tags_from),
                          ("--bisect-tag-pattern", self.bisect_tag_pattern))
