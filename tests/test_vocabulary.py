"""One vocabulary (issue 13 item 3), read from the sources: states, failure kinds and attempt ids
are written in their own modules and nowhere else.

The checks walk geryon/'s syntax trees (no import), so they see every function body.
"""
from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

from geryon.errors import FailureKind
from geryon.mapreduce.attempt import AttemptState
from geryon.mapreduce.jobhistory import JobState
from geryon.ui.cluster import NodeState

REPO = Path(__file__).resolve().parent.parent
GERYON = REPO / "geryon"

WORDS = {s.value for s in (*FailureKind, *AttemptState, *JobState, *NodeState)}
"""The strings the enums own."""

ENUM_HOMES = {"geryon/errors.py", "geryon/mapreduce/attempt.py", "geryon/mapreduce/jobhistory.py"}

OTHER_WORDS = {("geryon/mapreduce/memory.py", "memory")}
"""(file, word) where the word means something else: cgroup v2's controller named `memory`."""


@functools.cache
def _parsed(root: Path) -> tuple[tuple[str, ast.AST], ...]:
    return tuple((path.relative_to(root.parent).as_posix(), ast.parse(path.read_text(), str(path)))
                 for path in sorted(root.rglob("*.py")))


def _trees(root: Path = GERYON) -> Iterator[tuple[str, ast.AST]]:
    yield from _parsed(root)


def _literals(node: ast.AST) -> Iterator[str]:
    """The string constants of a comparison operand (a constant, or a tuple/list/set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for elt in node.elts:
            yield from _literals(elt)


def state_literals(root: Path = GERYON, skip: set[str] = ENUM_HOMES) -> list[str]:
    """`file:line: text` of every comparison with a state or failure-kind word written as a string,
    and of every `state=`/`kind=` keyword or `.finish(...)` given one."""
    found = []
    for rel, tree in _trees(root):
        if rel in skip:
            continue
        for node in ast.walk(tree):
            words: list[str] = []
            if isinstance(node, ast.Compare):
                for operand in (node.left, *node.comparators):
                    words += [w for w in _literals(operand) if w in WORDS]
            elif isinstance(node, ast.Call):
                words += [w for kw in node.keywords if kw.arg in ("state", "kind", "failure_kind")
                          for w in _literals(kw.value) if w in WORDS]
                if isinstance(node.func, ast.Attribute) and node.func.attr in ("finish", "attempt_ended"):
                    words += [w for arg in node.args for w in _literals(arg) if w in WORDS]
            words = [w for w in words if (rel, w) not in OTHER_WORDS]
            if words:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:100]}")
    return found


def class_name_tests(root: Path = GERYON) -> list[str]:
    """Comparisons that test a class's `__name__` (an exception classified by its name)."""
    found = []
    for rel, tree in _trees(root):
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                    isinstance(n, ast.Attribute) and n.attr in ("__name__", "__qualname__")
                    for operand in (node.left, *node.comparators) for n in ast.walk(operand)):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:100]}")
    return found


ATTEMPT_ID_HOME = "geryon/mapreduce/attempt.py"
NOT_ATTEMPT_IDS: set[str] = set()
"""Files whose `.a{n}` is another name (none: a reduce's staged part is `attempt.staged_part_name`)."""


def attempt_id_spellings(root: Path = GERYON) -> list[str]:
    """f-strings writing `<x>.a<n>` and `partition(".a")` reading it, outside `AttemptId`."""
    found = []
    for rel, tree in _trees(root):
        if rel == ATTEMPT_ID_HOME or rel in NOT_ATTEMPT_IDS:
            continue
        for node in ast.walk(tree):
            hit = False
            if isinstance(node, ast.JoinedStr):
                parts = node.values
                hit = any(isinstance(a, ast.Constant) and str(a.value).endswith(".a") and isinstance(b, ast.FormattedValue)
                          for a, b in zip(parts, parts[1:]))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("partition", "rpartition", "split", "rsplit") and node.args:
                hit = any(w == ".a" for w in _literals(node.args[0]))
            if hit:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:100]}")
    return found


_AFTER_TEXT = re.compile(r"(?:^|[^A-Za-z0-9_])(?:[mrs]|part)$")
_AFTER_VALUE = re.compile(r"[^A-Za-z0-9_](?:[mrs]|part)$")
"""The end of an f-string's text before a value that makes a task or job-part name: `m{i}`,
`running r{i}`, `s{i}.`, `{job}-s{i}`, `{job}.part{r}`; after another value the letter needs a
separator before it (`{minutes}m{secs}` is a duration)."""

NOT_TASK_NAMES = {"geryon/disks/replicate.py", "geryon/ingest/load.py"}
"""Files whose `.r{k}` is another name: a replica chunk's (`c0.r1`)."""


def _letters(node: ast.AST) -> set[str]:
    """The string constants a formatted value can be: `{'s' if sample else 'm'}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _letters(node.body) | _letters(node.orelse)
    return set()


def task_name_spellings(root: Path = GERYON) -> list[str]:
    """f-strings writing a task's name (`m3`, `r0`, `s2`), a step's (`s2.`, `JOB-s2`) or a staged
    part's (`wc.part0.a1`) outside `geryon.mapreduce.attempt`."""
    found = []
    for rel, tree in _trees(root):
        if rel == ATTEMPT_ID_HOME or rel in NOT_TASK_NAMES:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.JoinedStr):
                continue
            parts = node.values
            hit = False
            for i, (a, b) in enumerate(zip(parts, parts[1:])):
                if not isinstance(b, ast.FormattedValue):
                    continue
                if isinstance(a, ast.Constant):
                    hit |= bool((_AFTER_TEXT if i == 0 else _AFTER_VALUE).search(str(a.value)))
                elif isinstance(a, ast.FormattedValue):
                    letters = _letters(a.value)
                    hit |= bool(letters) and letters <= {"m", "r", "s"}
            if hit:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:100]}")
    return found


def test_task_and_step_names_are_written_in_attempt_only() -> None:
    assert task_name_spellings() == []


def test_no_state_or_failure_kind_is_written_as_a_string_outside_its_enum() -> None:
    assert state_literals() == []


def test_no_class_is_told_by_its_name() -> None:
    assert class_name_tests() == []


def test_attempt_ids_are_written_and_read_by_attempt_id_only() -> None:
    assert attempt_id_spellings() == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The scans are not vacuous: each finds its pattern in a file written to show it."""
    pkg = tmp_path / "geryon"
    pkg.mkdir()
    (pkg / "bad.py").write_text(
        "def f(a, exc, rec, t, n):\n"
        "    if a.get('state') == 'done' or a['kind'] in ('user', 'lost'):\n"
        "        rec.finish('succeeded', {})\n"
        "    rec.update(state='killed')\n"
        "    if type(exc).__name__ == 'ClientConnectorError':\n"
        "        return f'{t}.a{n}'\n"
        "    return 'x'.rpartition('.a')\n"
        "def g(i, job, sample, minutes, secs, disk, k):\n"
        "    names = [f'm{i}', f'running r{i} again', f'{job}-s{i}', f's{i}.', f'{job}.part{i}']\n"
        "    names.append(f\"{'s' if sample else 'm'}{i}\")\n"
        "    return names + [f'{minutes}m{secs:02d}s', f'{disk}x{k}', f'{i}ms', f'terms{k}']\n")
    assert sorted(line.split(":")[1] for line in state_literals(pkg, set())) == ["2", "2", "3", "4"]
    assert [line.split(":")[1] for line in class_name_tests(pkg)] == ["5"]
    assert sorted(line.split(":")[1] for line in attempt_id_spellings(pkg)) == ["6", "7"]
    assert [line.split(":")[1] for line in task_name_spellings(pkg)] == ["9"] * 5 + ["10"]
