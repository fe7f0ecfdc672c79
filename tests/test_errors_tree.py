"""The GeryonError tree (issue 13 item 3): every exception class geryon defines is a
GeryonError and can be imported from `geryon.errors`, wherever it is defined.

Before: 15 modules held the tree and 10 errors sat outside it (NoCpu, BatchError, JournalRefused,
WorkerLost, WorkerDied, NodeError, CpuLost, PathEscapes, RunRefused, ProtocolError: a CLI
verb that let one through printed a traceback, not one line).
"""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import geryon
import geryon.errors
from geryon.errors import GeryonError

REPO = Path(__file__).resolve().parent.parent

OUTSIDE = {"geryon.disks.chunk.OutsideDisk": "an fs.errors.ResourceNotFound: PyFilesystem's callers catch fs errors"}
"""Exceptions of geryon that are not GeryonErrors, with why."""


def _modules() -> list[str]:
    names = []
    for path in sorted((REPO / "geryon").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined at the top of a geryon module (imported to see its bases)."""
    found = {}
    for name in _modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_exception_of_geryon_is_in_the_tree() -> None:
    found = _defined_exceptions()
    assert len(found) > 30                                   # the walk saw them
    outside = sorted(k for k, cls in found.items() if not issubclass(cls, GeryonError))
    assert outside == sorted(OUTSIDE)


def test_every_exception_of_geryon_is_reachable_from_geryon_errors() -> None:
    missing = [k for k, cls in _defined_exceptions().items()
               if getattr(geryon.errors, cls.__name__, None) is not cls]
    assert missing == []
    assert set(geryon.errors.__all__) >= {cls.__name__ for cls in _defined_exceptions().values()}


def test_no_exception_class_hides_inside_a_function() -> None:
    """Classes defined in a function body would escape the walk above."""
    nested = []
    for path in sorted((REPO / "geryon").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nested += [f"{path.relative_to(REPO)}:{c.lineno}" for c in ast.walk(node)
                           if isinstance(c, ast.ClassDef) and any("Error" in ast.unparse(b) or "Exception" in ast.unparse(b)
                                                                  for b in c.bases)]
    assert nested == []


def test_geryon_errors_imports_nothing_of_ours() -> None:
    """It is the bottom layer: the errors defined above it are loaded by name when asked for."""
    tree = ast.parse((REPO / "geryon" / "errors.py").read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [m for m in imported if m.split(".")[0] in ("geryon", "registry", "ndb", "shell")] == []


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="NoSuchError"):
        geryon.errors.NoSuchError  # noqa: B018
    assert geryon is not None
