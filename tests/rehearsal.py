"""The rehearsal of the first nights (session fixtures; assertions in tests/test_rehearsal.py).

* The tested repository: this checkout's files (tracked and untracked, not ignored) committed
  into a fresh git repository, plus the organisation's one change: the rehearsal override
  applied to ``cases/`` (tests/rehearsal_setup.py). Every job clones it afresh.
* Agents set up as the README's "Setting up agents, per lane" says, its shell block copied
  as written (``/var/lib/buildkite-agent`` becomes the agent's home here): a clean virtualenv
  (no vLLM), ``pip install -q -e .`` in the post-checkout hook, the environment hook's PATH,
  HF_HOME, HF_TOKEN and GPU pinning. GPU agents get the test dockerd (their Docker); the
  orchestrating agent gets ``HARNESS_HISTORY_DB``, a real PostgreSQL database.
* Buildkite and its agents are the stand-in (tests/bkstandin_run.py), scheduled builds.
* vLLM's images are the stand-ins of tests/vllm_images.py in the loopback registry.

``night1`` and ``night2`` are session-scoped and return ``Night`` (the build, its state dir,
the registry, the database): later tests (an automatic bisect) reuse night 2 as it is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bkstandin_run import Agent, BuildRun, run_build
from tests.hub_fixtures import fake_hub_cache
from tests.rehearsal_setup import write_cases
from tests.vllm_images import Nightlies, fake_commit

REPO = Path(__file__).resolve().parent.parent
README_HOME = "/var/lib/buildkite-agent"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
QUEUES = {"rocm": "rehearsal-mi300", "cuda": "rehearsal-h100"}
# The organisation's settings, in the pipeline's environment (harness/spec/settings.py).
BUILD_ENV = {"HARNESS_PLATFORMS": "rocm,cuda", "HARNESS_QUEUE_ROCM": QUEUES["rocm"],
             "HARNESS_QUEUE_CUDA": QUEUES["cuda"]}
HISTORY_DB_VAR = "HARNESS_HISTORY_DB"


@dataclass
class Night:
    number: int
    run: BuildRun
    seconds: float
    registry: str
    repository: Path
    commit: str
    database: str  # the history store's URL
    images: dict[str, str]  # platform -> the nightly-<commit> ref the nightly tag pointed at
    agents: list[Agent]

    @property
    def state(self) -> Path:
        return self.run.state


def readme_agent_block(readme: Path = REPO / "README.md") -> str:
    """The GPU agent's shell block of the README's agent set-up, as written."""
    text = readme.read_text()
    section = text[text.index("### Setting up agents, per lane"):]
    section = section[section.index("- **GPU agents**"):]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README's GPU agent set-up has no ```sh block"
    return match.group(1)


def readme_hooks(block: str) -> dict[str, list[str]]:
    """The block split into its parts: lines marked ``# once``, then the lines under each
    ``# hooks/<name>`` comment; other comments and trailing comments left out."""
    parts: dict[str, list[str]] = {"once": []}
    current = None
    for line in (raw.strip() for raw in block.splitlines()):
        hook = re.match(r"#\s*hooks/([a-z-]+)", line)
        if hook:
            current = parts.setdefault(hook.group(1), [])
        elif re.search(r"#\s*once\s*$", line):
            parts["once"].append(re.sub(r"\s+#.*$", "", line))
        elif line and not line.startswith("#"):
            assert current is not None, f"README line outside any hook: {line!r}"
            current.append(re.sub(r"\s+#.*$", "", line))
    return parts


def set_up_agent(home: Path, hooks: dict[str, list[str]], pinning: str | None) -> dict[str, str]:
    """Run the README's once-lines for an agent whose home is ``home``; returns the hook
    scripts (environment, post-checkout) with the README's paths moved to ``home``."""
    def here(line: str) -> str:
        return line.replace(README_HOME, str(home))

    home.mkdir(parents=True, exist_ok=True)
    for line in hooks["once"]:
        done = subprocess.run(["/bin/bash", "-e", "-c", here(line)], capture_output=True,
                              text=True, timeout=300, env={"PATH": SYSTEM_PATH, "HOME": str(home)})
        assert done.returncode == 0, f"README set-up line {line!r}: {done.stderr}"
    environment = [here(line) for line in hooks["environment"]]
    environment = [line.replace("HF_TOKEN=...", "HF_TOKEN=hf_rehearsal_not_a_token")
                   for line in environment]
    if pinning == "cuda":  # the README's comment: CUDA agents pin with CUDA_VISIBLE_DEVICES
        environment = [line.replace("ROCR_VISIBLE_DEVICES=", "CUDA_VISIBLE_DEVICES=")
                       for line in environment]
    elif pinning is None:
        environment = [line for line in environment if "_VISIBLE_DEVICES=" not in line]
    return {"environment": "\n".join(environment),
            "post-checkout": "\n".join(here(line) for line in hooks["post-checkout"])}


def tested_repository(root: Path, registry: str) -> tuple[Path, str]:
    """This checkout's files plus the organisation's override, one commit of a new repo."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard",
                             "-z"], capture_output=True, text=True, timeout=60, check=True)
    repo = root / "harness-repo"
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    write_cases(repo / "cases", registry)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                              text=True, timeout=120).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("-c", "user.name=rehearsal", "-c", "user.email=rehearsal@invalid", "commit", "-qm",
        "the harness, with the rehearsal's platform override in cases/")
    return repo, git("rev-parse", "HEAD")


@dataclass
class Rehearsal:
    root: Path
    repository: Path
    commit: str
    agents: list[Agent]
    database: str
    nightlies: Nightlies
    hf_home: Path


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory, docker_engine, nightlies, postgres_server) -> Rehearsal:
    root = tmp_path_factory.mktemp("rehearsal")
    repository, commit = tested_repository(root, nightlies.registry)
    hooks = readme_hooks(readme_agent_block())
    database = postgres_server.new_database("rehearsal")
    agents = []
    for name, queue, pinning, extra in [
            ("mi300-gpu0", QUEUES["rocm"], "rocm", docker_engine.env),
            ("h100-gpu0", QUEUES["cuda"], "cuda", docker_engine.env),
            ("orchestrator", "default", None, {HISTORY_DB_VAR: database})]:
        home = root / "agents" / name
        scripts = set_up_agent(home, hooks, pinning)
        hook_dir = home / "hooks"
        hook_dir.mkdir()
        for hook, body in scripts.items():
            (hook_dir / hook).write_text(body + "\n")
        agents.append(Agent(name, queue, {"PATH": SYSTEM_PATH, "HOME": str(home),
                                          "LANG": "C.UTF-8", **extra}, hooks=hook_dir))
    hf_home = root / "agents" / "mi300-gpu0" / "hf"
    fake_hub_cache(hf_home)  # the agents' lasting HF_HOME: snapshots fetched on an earlier day
    for name in ("h100-gpu0", "orchestrator"):
        shutil.copytree(hf_home, root / "agents" / name / "hf", symlinks=True)
    return Rehearsal(root, repository, commit, agents, database, nightlies, hf_home)


def run_night(rehearsal: Rehearsal, number: int, images: dict[str, str]) -> Night:
    began = time.monotonic()
    run = run_build(rehearsal.repository, rehearsal.commit, rehearsal.agents,
                    rehearsal.root / f"build-{number}", number, source="schedule",
                    build_env=BUILD_ENV)
    seconds = time.monotonic() - began
    print(f"\nrehearsal night {number}: {seconds:.0f} s, outcomes {run.build.outcomes}")
    return Night(number, run, seconds, rehearsal.nightlies.registry, rehearsal.repository,
                 rehearsal.commit, rehearsal.database, images, rehearsal.agents)


@pytest.fixture(scope="session")
def night1(rehearsal) -> Night:
    """Night 1: vLLM's rocm and cuda nightlies of commit 1, both good."""
    n = rehearsal.nightlies
    images = {p: n.publish(p, fake_commit(1)) for p in ("rocm", "cuda")}
    return run_night(rehearsal, 1, images)


# Night 2's rocm nightlies: commits 2..NIGHT2_LAST, the Phi4MM fix reverted from
# NIGHT2_FIRST_BAD on: with night 1's image, 9 nightly tags for the bisect the night starts.
NIGHT2_LAST = 9
NIGHT2_FIRST_BAD = 6


@pytest.fixture(scope="session")
def night2(rehearsal, night1) -> Night:
    """Night 2: rocm's nightly moved over commits 2..NIGHT2_LAST (the Phi4MM fix reverted in the
    image's vLLM from NIGHT2_FIRST_BAD on); cuda's to commit NIGHT2_LAST (good)."""
    n = rehearsal.nightlies
    for number in range(2, NIGHT2_LAST):
        n.publish("rocm", fake_commit(number), revert_phi4mm=number >= NIGHT2_FIRST_BAD)
    images = {"rocm": n.publish("rocm", fake_commit(NIGHT2_LAST), revert_phi4mm=True),
              "cuda": n.publish("cuda", fake_commit(NIGHT2_LAST))}
    return run_night(rehearsal, 2, images)
