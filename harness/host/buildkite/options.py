"""What ``harness pipeline`` was asked for (``PipelineOptions``) and its comparisons. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from harness.host.buildkite.uploads import MAX_JOBS_PER_UPLOAD, PipelineError


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
        out: list[str] = []
        if self.cases:
            out += ["--cases", self.cases]
        if self.platforms_file:
            out += ["--platforms-file", self.platforms_file]
        if self.platforms:
            out += ["--platform", ",".join(self.platforms)]
        if self.keyword:
            out += ["-k", self.keyword]
        if self.nightly:
            out.append("--nightly")
        if self.gpu_reference:
            out.append("--gpu-reference")
        if self.parallelism != 1:
            out += ["--parallelism", str(self.parallelism)]
        if self.build_images:
            out.append("--build-images")
        if self.push_images:
            out.append("--push-images")
        for platform, image in self.images:
            out += ["--image", f"{platform}={image}"]
        if self.registry:
            out += ["--registry", self.registry]
        if self.namespace:
            out += ["--namespace", self.namespace]
        if self.comparisons != PipelineOptions.comparisons:
            for comparison in self.comparisons:
                out += ["--compare", f"{comparison.baseline}:{comparison.candidate}"]
            if not self.comparisons:
                out.append("--no-compare")
        if self.queue:
            out += ["--queue", self.queue]
        if self.history_db:
            out += ["--history-db", self.history_db]
        if self.baseline_run:
            out += ["--baseline-run", self.baseline_run]
        if self.history_db_env:
            out += ["--history-db-env", self.history_db_env]
        if self.max_jobs_per_upload != MAX_JOBS_PER_UPLOAD:
            out += ["--max-jobs-per-upload", str(self.max_jobs_per_upload)]
        if self.harness != "harness":
            out += ["--harness-command", self.harness]
        if self.test_engine_token_env:
            out += ["--test-engine-token-env", self.test_engine_token_env]
        return out + self.autobisect_argv()

    def autobisect_argv(self) -> list[str]:
        """The auto-bisect settings of ``harness pipeline``, as it takes them (round trip)."""
        out: list[str] = []
        if self.no_autobisect:
            out.append("--no-autobisect")
        for flag, value in (("--bisect-max-age", self.bisect_max_age),
                            ("--bisect-budget", self.bisect_budget),
                            ("--bisect-tags-from", self.bisect_tags_from),
                            ("--bisect-tag-pattern", self.bisect_tag_pattern)):
            if value is not None:
                out += [flag, str(value)]
        return out
