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
