"""The import direction of DESIGN.md: ndb and shell import nothing of ours, registry only ndb.

Each package is imported in a fresh interpreter, and the modules of ours it loaded are listed.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("package", ["ndb", "shell", "registry", "geryon"])
def test_only_cli_modules_import_click(package):
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "bad = []\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    if m.name.startswith('geryon.cli'):\n"
        "        continue\n"
        "    importlib.import_module(m.name)\n"
        "print('click' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
