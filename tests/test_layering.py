"""The import direction of DESIGN.md: ndb and shell import nothing of ours, registry only ndb.

Each package is imported in a fresh interpreter, and the modules of ours it loaded are listed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OURS = ("geryon", "registry", "shell", "ndb")

ALLOWED = {
    "ndb": {"ndb"},
    "shell": {"shell"},
    "registry": {"registry", "ndb"},
    "geryon": {"geryon", "registry", "shell", "ndb"},
}


def _loaded_after_import(package: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({package!r})\n"
        "import pkgutil\n"
        f"pkg = sys.modules[{package!r}]\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    if '.cli' in m.name and pkg.__name__ != 'geryon':\n"
        "        continue\n"
        "    importlib.import_module(m.name)\n"
        f"print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules}} & set({list(OURS)!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("package", ["ndb", "shell", "registry"])
def test_package_imports_only_what_it_may(package):
    assert _loaded_after_import(package) <= ALLOWED[package]


def _modules(package: str) -> list[str]:
    """Every module of a package, from its files (walk_packages would import subpackages)."""
    root = REPO / package
    names = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


@pytest.mark.parametrize("package", ["ndb", "shell", "registry", "geryon"])
def test_only_cli_modules_import_click(package):
    modules = [m for m in _modules(package) if not m.startswith("geryon.cli")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'click' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "", f"{out.stdout.strip()} imports click"


# -- circles and upward imports inside geryon/ (issue 13 item 4) ---------------------------------

LAYERS = (
    ("geryon.errors", "geryon.defaults", "geryon.net"),      # the wire
    ("geryon.disks", "geryon.records"),                      # data
    ("geryon.cluster",),                                     # who is there, rcpu, dsh
    ("geryon.mapreduce", "geryon.ingest", "geryon.taskfs"),  # jobs
    ("geryon.node",),                                        # server side
    ("geryon.ui",),                                          # what a user looks at
    ("geryon.cli",),                                         # the command
)
"""docs/ARCHITECTURE.md's layer picture, bottom first; `geryon` itself (the façade) is above all."""

MAX_UPWARD = 4
"""Imports that may still run up the layers (the issue's bound)."""


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports anywhere (top level or inside functions),
    leaving out imports under `if TYPE_CHECKING:` (type-only)."""
    import ast

    def name_of(path: Path) -> str:
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    files = {name_of(p): p for p in sorted((root / package).rglob("*.py"))}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        type_only = {id(n) for node in ast.walk(tree)
                     if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                     for stmt in node.body for n in ast.walk(stmt)}
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    here = here[:len(here) - node.level + 1]
                    base = ".".join(here + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            targets.update(t for t in map(known, names) if t is not None and t != mod)
        graph[mod] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    if module == "geryon":
        return len(LAYERS)
    raise AssertionError(f"{module} is in no layer of LAYERS: add it (and to docs/ARCHITECTURE.md)")


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def test_geryon_has_no_import_circles():
    found = circles(import_graph(REPO, "geryon"))
    assert found == [], f"{len(found)} import circles: {found}"


def test_at_most_four_imports_run_up_the_layers():
    found = upward(import_graph(REPO, "geryon"))
    assert len(found) <= MAX_UPWARD, f"{len(found)} imports run up the layers: {found}"


def test_the_graph_sees_circles_through_functions_and_skips_type_only(tmp_path):
    pkg = tmp_path / "geryon"
    (pkg / "mapreduce").mkdir(parents=True)
    (pkg / "disks").mkdir()
    for d in (pkg, pkg / "mapreduce", pkg / "disks"):
        (d / "__init__.py").write_text("")
    (pkg / "mapreduce" / "job.py").write_text("def run():\n    from geryon.mapreduce import api\n")
    (pkg / "mapreduce" / "api.py").write_text("from . import job\n")
    (pkg / "disks" / "chunk.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from geryon.disks.remote import RemoteFS\n"
        "from geryon.mapreduce.job import run\n")
    (pkg / "disks" / "remote.py").write_text("from geryon.disks.chunk import x\n")
    graph = import_graph(tmp_path, "geryon")
    assert circles(graph) == [["geryon.mapreduce.api", "geryon.mapreduce.job"]]
    assert upward(graph) == [("geryon.disks.chunk", "geryon.mapreduce.job")]
