"""The README's quick start does what it says: its geryon command runs and counts words."""
from __future__ import annotations

import collections
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def _quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_quick_start_has_exactly_two_commands():
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert "geryon mapreduce" in commands[0]
    assert commands[1] == "tests/run"


def test_ci_runs_the_readme_test_command():
    """CI and a new user run one script, and it installs what the tests need."""
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^exec tests/run$", ci, re.M)
    script = REPO / "tests" / "run"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    for package in ("python3-venv", "fuse3", "iproute2", "gawk"):
        assert package in text
    assert "python -m pytest" in text


def test_quick_start_job_runs_and_counts_words(tmp_path):
    command = _quick_start_commands()[0]
    geryon_part = command[command.index("geryon mapreduce"):]
    argv = shlex.split(geryon_part)[1:]
    (tmp_path / "examples").symlink_to(EXAMPLES)
    env = dict(os.environ)
    env.pop("GERYON_NDB", None)
    run = subprocess.run([sys.executable, "-c", "from geryon.cli import main; main()", *argv],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wordcount.out" in run.stdout
    parts = sorted((tmp_path / "wordcount.out").glob("part-*"))
    assert len(parts) == 5
    got = {}
    for part in parts:
        for line in part.read_text().splitlines():
            word, count = line.split("\t")
            got[word] = int(count)
    oracle: collections.Counter = collections.Counter()
    for disk in ("d0.mbox", "d1.mbox"):
        for path in sorted((EXAMPLES / "disks" / disk).iterdir()):
            oracle.update(path.read_text().split())
    assert got == dict(oracle)
