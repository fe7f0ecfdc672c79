"""What travels with a job: its scripts, the modules they import from their own directory, named files.

A job pack holds the job, not the directory it was started from. Its members are found by
import analysis: each Python script is parsed (`ast`, never run) and every `import x` or
`from x import y` (also inside functions, and relative imports) that resolves to a file
beside the script, or under a package there, is taken, recursively. Files the user names
(`--py-files`, mrjob's and Spark's name, for modules; `--files`, Hadoop's, for anything else)
travel too. Dotfiles and found modules over `DEFAULT_MAX_FOUND` bytes never travel unless
named. Not here: the pack's format and unpacking (`geryon.mapreduce.jobpack`).
"""
from __future__ import annotations

import ast
import logging
import os
from collections.abc import Iterable, Sequence

from geryon.errors import GeryonError

log = logging.getLogger(__name__)

DEFAULT_MAX_FOUND = 4 << 20
"""The largest module import analysis may take on its own (bytes); bigger ones must be named."""


class JobFilesError(GeryonError):
    """The files of a job cannot be gathered (a named file is missing, two files collide)."""


def is_python(path: str) -> bool:
    """A `.py` file, or an executable whose first line runs python."""
    if path.endswith(".py"):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split(os.sep) if part not in (".", ".."))


def _module_files(base: str, parts: Sequence[str]) -> tuple[list[str], str | None]:
    """The files that make module `parts` under `base` (package __init__s too), and its directory.

    Returns ([], None) when the module is not there (the standard library, site-packages).
    """
    files: list[str] = []
    d = base
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        pkg = os.path.join(d, part)
        if os.path.isdir(pkg) and not os.path.islink(pkg):
            init = os.path.join(pkg, "__init__.py")
            if os.path.isfile(init):
                files.append(init)
            d = pkg
            continue
        if last and os.path.isfile(pkg + ".py"):
            files.append(pkg + ".py")
            return files, None
        return [], None
    return files, d


def imports_of(path: str) -> list[tuple[str, int, tuple[str, ...]]]:
    """The imports a Python file makes: (module, level, names), for `from` imports the names.

    A file that does not parse has none here: loading it reports the SyntaxError.
    """
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, ValueError, OSError):
        return []
    found: list[tuple[str, int, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, tuple(a.name for a in node.names)))
    return found


def local_imports(path: str, search: Sequence[str]) -> list[str]:
    """The files of the modules `path` imports that live under one of the `search` directories."""
    out: list[str] = []
    for module, level, names in imports_of(path):
        parts = [p for p in module.split(".") if p]
        if level:
            base = os.path.dirname(path)
            for _ in range(level - 1):
                base = os.path.dirname(base)
            bases = [base]
        else:
            bases = list(search)
        for base in bases:
            files, directory = _module_files(base, parts) if parts else ([], base)
            if not files and directory is None:
                continue
            out.extend(files)
            if directory is not None:   # a package: `from pkg import sub` may name submodules
                for name in names:
                    sub, _ = _module_files(directory, [name])
                    out.extend(sub)
            break   # the first directory on the path that has it wins, as for sys.path
    return out


def gather(scripts: Sequence[str], root: str, *, py_files: Iterable[str] = (), files: Iterable[str] = (),
           max_found: int = DEFAULT_MAX_FOUND) -> dict[str, str]:
    """Every file a job needs: {name in the pack: path here}.

    Args:
        scripts: the job's script files (absolute paths under `root`).
        root: the job directory (the pack's top); names in the pack are relative to it.
        py_files: modules or package directories to ship whatever the analysis finds
            (outside `root`: at the pack's top, importable there as here).
        files: other files (or directories) to ship; outside `root` at the pack's top.
        max_found: modules found by analysis larger than this are refused: name them.
    Raises:
        JobFilesError: a named file is missing, a found module is too large, or two files
            would have the same name in the pack.
    """
    root = os.path.abspath(root)
    members: dict[str, str] = {}

    def arcname(path: str, outside_base: str | None) -> str:
        rel = os.path.relpath(path, root)
        if rel.startswith(".." + os.sep) or rel == "..":
            rel = os.path.relpath(path, outside_base or os.path.dirname(path))
        return rel

    def add(path: str, name: str) -> None:
        path = os.path.abspath(path)
        prior = members.get(name)
        if prior is not None and prior != path:
            raise JobFilesError(f"{path} and {prior} would both be {name} in the job pack")
        members[name] = path

    named: list[tuple[str, str | None]] = []   # (path, base for names outside root)
    for given in [*py_files, *files]:
        path = os.path.abspath(given)
        if not os.path.exists(path):
            raise JobFilesError(f"{given}: no such file to ship with the job")
        parent = os.path.dirname(path)
        if os.path.isdir(path):
            for dirpath, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
                for n in sorted(names):
                    full = os.path.join(dirpath, n)
                    if n.startswith(".") or n.endswith(".pyc") or os.path.islink(full) or not os.path.isfile(full):
                        continue
                    named.append((full, parent))
        else:
            named.append((path, parent))
    for path, base in named:
        add(path, arcname(path, base))

    search = sorted({os.path.dirname(os.path.abspath(s)) for s in scripts}) + [root]
    search += sorted({os.path.dirname(os.path.abspath(p)) for p in py_files} - set(search))
    queue = [os.path.abspath(s) for s in scripts]
    queue += [p for p, _ in named if p.endswith(".py")]
    seen: set[str] = set()
    for script in scripts:
        add(script, arcname(os.path.abspath(script), None))
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        if not is_python(path):
            continue
        for found in local_imports(path, [os.path.dirname(path), *search]):
            found = os.path.abspath(found)
            if found in seen or found in members.values():
                queue.append(found)
                continue
            base = next((b for b in search if found.startswith(b + os.sep)), os.path.dirname(found))
            name = arcname(found, base)
            if _hidden(name):
                log.info("not shipping %s: a dotfile (name it with --py-files to ship it)", found)
                continue
            size = os.path.getsize(found)
            if size > max_found:
                raise JobFilesError(
                    f"{found} ({size} bytes) is imported by the job but larger than "
                    f"{max_found >> 20} MiB: name it with --py-files to ship it")
            add(found, name)
            queue.append(found)
    return members
