"""One direction of imports over the whole package (every import, at module level or inside a
function, TYPE_CHECKING included):

    commands -> host -> readers -> shared -> model
    worker ------------------------> shared -> model

- commands: the command line (harness.commands);
- host: what runs on the orchestrating machine (harness.host: plan execution, launch, images, doctor,
  Buildkite, bisect, the hf reference);
- worker: what runs beside the engine, inside the container (harness.worker);
- readers: what reads results (compare, report, history);
- shared: what both host and worker need (case/platform spec, planning, processes, secrets,
  run info, GPU info, models);
- model: the result model (outcomes, results, resultview).

The host never imports a worker module and the worker never imports the host: what both need
lives in shared or model. KNOWN lists today's exceptions; each must still occur (a fixed one is
struck off), so the list only shrinks and any new import against the direction fails.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO

# Layer of a module: the longest matching name (a module, or a package and all below it; a
# name ending in _ is a prefix; "harness" is the top package's __init__ alone).
LAYERS = {
    "harness.__main__": "commands", "harness.commands": "commands",
    "harness.host": "host",
    "harness.worker": "worker",
    "harness.compare": "readers", "harness.report": "readers", "harness.history": "readers",
    "harness.signatures": "readers",
    "harness.spec": "shared", "harness.plan": "shared", "harness.proc": "shared",
    "harness.secrets": "shared", "harness.runinfo": "shared", "harness.runid": "shared",
    "harness.gpuinfo": "shared", "harness.models": "shared", "harness.stack": "shared",
    "harness.testtree": "shared", "harness.junitnodes": "shared",
    "harness.bisect_command": "shared",
    # the rulebook and its scan: the worker signs its own failures with them
    "harness.signatures.rulebook": "shared", "harness.signatures.scan": "shared",
    "harness.signatures.literals": "shared", "harness.signatures.exits": "shared",
    "harness": "model", "harness.outcomes": "model", "harness.results": "model",
    "harness.resultview": "model",
}
MAY_IMPORT = {
    "commands": {"commands", "host", "readers", "shared", "model"},
    "host": {"host", "readers", "shared", "model"},
    "worker": {"worker", "shared", "model"},
    "readers": {"readers", "shared", "model"},
    "shared": {"shared", "model"},
    "model": {"model"},
}
# Imports against the direction that are tolerated, each with its reason; none today. Each must
# still occur (test below), so the list only shrinks.
KNOWN: frozenset[tuple[str, str]] = frozenset()


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` to the package's modules it imports."""
    files = {module_name(root, p): p for p in root.rglob("*.py")
             if "phi4mm_remote" not in p.parts}  # vendored hub code, imports nothing of ours
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for alias in node.names:  # `from pkg import module` names the module
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def layer(module: str) -> str | None:
    matches = [p for p in LAYERS if module == p or (p != "harness" and module.startswith(
        p + ("" if p.endswith("_") else ".")))]
    return LAYERS[max(matches, key=len)] if matches else None


def violations(graph: dict[str, set[str]], known=frozenset()) -> list[str]:
    found = []
    for module, imported in sorted(graph.items()):
        if layer(module) is None:
            found.append(f"{module}: no layer (add it to LAYERS in {Path(__file__).name})")
            continue
        for target in sorted(imported):
            if (module, target) not in known and layer(target) not in MAY_IMPORT[layer(module)]:
                found.append(f"{module} ({layer(module)}) imports {target} ({layer(target)})")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


HARNESS = REPO / "harness"


def test_the_whole_package_imports_in_one_direction():
    assert violations(import_graph(HARNESS), KNOWN) == []


def test_every_known_exception_still_occurs_so_the_list_only_shrinks():
    graph = import_graph(HARNESS)
    gone = sorted(pair for pair in KNOWN if pair[1] not in graph.get(pair[0], set()))
    assert gone == [], "fixed: strike these off KNOWN"


def test_no_import_cycle():
    assert cycles(import_graph(HARNESS)) == []


@pytest.mark.parametrize("host_module, line", [
    ("host/execute.py", "from harness.worker.job import run_job\n"),
    ("host/doctor.py", "def f():\n    from harness.worker import progress\n"),
    ("host/launch/local.py", "import harness.worker.engine\n"),
    ("host/bisect/step.py", "from ...worker import checks\n"),
], ids=["execute", "in-a-function", "launch-import", "bisect-relative"])
def test_a_host_module_that_imports_a_worker_module_fails(tmp_path, host_module, line):
    copy = tmp_path / "harness"
    shutil.copytree(HARNESS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(import_graph(copy), KNOWN) == []
    with open(copy / host_module, "a", encoding="utf-8") as handle:
        handle.write("\n" + line)
    found = violations(import_graph(copy), KNOWN)
    assert len(found) == 1 and "imports harness.worker." in found[0], found


def test_the_checker_on_a_synthetic_tree(tmp_path):
    files = {"__init__.py": "", "commands/__init__.py": "",
             "commands/cli.py": "from harness.host import execute\n",
             "host/__init__.py": "", "host/execute.py": "from harness.results import R\n",
             "results.py": "R = 1\n",
             "worker/__init__.py": "", "worker/job.py": "from harness import results\n",
             "novel.py": "", "spec/__init__.py": "", "spec/case.py": "import harness.host.execute\n",
             "report/__init__.py": "", "report/a.py": "from . import b\n",
             "report/b.py": "from harness.report import a\n"}
    for name, text in files.items():
        (tmp_path / "harness" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "harness" / name).write_text(text)
    graph = import_graph(tmp_path / "harness")
    assert graph["harness.commands.cli"] == {"harness.host.execute"}
    assert graph["harness.report.a"] == {"harness.report.b"}
    assert violations(graph) == [
        "harness.novel: no layer (add it to LAYERS in test_import_direction.py)",
        "harness.spec.case (shared) imports harness.host.execute (host)"]
    assert cycles(graph) == [["harness.report.a", "harness.report.b"]]
