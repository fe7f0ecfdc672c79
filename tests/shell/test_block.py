"""Command blocks: recognising `{ ... }`, and starting commands in a directory."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shell.block import SHELL, block_body, command_argv, is_command_block, start, stop
from shell.errors import BlockNotStarted, ShellError


@pytest.mark.parametrize(
    "text",
    ["{ ls }", "  {ls; echo a}\n", "{ idx | sort | agg }", "{ echo '}' }", '{ echo "{" }',
     "{ { a }; { b } }", "{ echo \\} }", "{}"],
)
def test_is_command_block(text: str) -> None:
    assert is_command_block(text)


@pytest.mark.parametrize(
    "text",
    ["ls", "{ a } | { b }", "{ a", "a }", "{ echo '} ", "", "x { a }", None, ["{", "}"], b"{ a }"],
)
def test_is_not_command_block(text: object) -> None:
    assert not is_command_block(text)


def test_block_body() -> None:
    assert block_body("  { idx | sort; echo done }  ") == "idx | sort; echo done"
    assert block_body("{ a } | { b }") == "{ a } | { b }"
    assert block_body("ls -l") == "ls -l"


def test_command_argv() -> None:
    assert command_argv("{ echo hi }") == [SHELL, "-c", "echo hi"]
    assert command_argv("echo hi | wc") == [SHELL, "-c", "echo hi | wc"]
    assert command_argv(["printf", "%s", Path("x")]) == ["printf", "%s", "x"]  # type: ignore[list-item]
    with pytest.raises(ValueError):
        command_argv([])


def test_start_block_in_cwd_with_env(tmp_path: Path) -> None:
    proc = start("{ pwd; echo \"$GERYON_TEST_VAR\"; cat }", tmp_path, env={"GERYON_TEST_VAR": "v 1"},
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = proc.communicate(b"from stdin\n", timeout=30)
    assert proc.returncode == 0
    assert out.decode().splitlines() == [str(tmp_path.resolve()), "v 1", "from stdin"]


def test_start_argv_inherits_environment(tmp_path: Path) -> None:
    code = "import os; print(os.environ.get('PATH') is not None, os.environ['EXTRA'])"
    proc = start([sys.executable, "-c", code], tmp_path, env={"EXTRA": "e"}, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert out == b"True e\n"


def test_start_clean_environment(tmp_path: Path) -> None:
    proc = start("echo \"[$HOME]\"", tmp_path, env={"ONLY": "1"}, inherit_env=False,
                 stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert out == b"[]\n"


def test_start_stdin_defaults_to_devnull(tmp_path: Path) -> None:
    proc = start("cat; echo end", tmp_path, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert out == b"end\n"


def test_exit_status_is_the_callers(tmp_path: Path) -> None:
    proc = start("{ exit 3 }", tmp_path)
    assert proc.wait(timeout=30) == 3


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BlockNotStarted, match="nowhere") as info:
        start("true", tmp_path / "nowhere")
    assert isinstance(info.value, ShellError)


def test_missing_program(tmp_path: Path) -> None:
    with pytest.raises(BlockNotStarted, match="no-such-program-xyz"):
        start(["no-such-program-xyz"], tmp_path)


def test_stop_kills_the_whole_group(tmp_path: Path) -> None:
    # The shell's child (sleep) must die too, or a killed job leaves orphans behind.
    proc = start("sleep 60 & echo $!; wait", tmp_path, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    status = stop(proc, grace=5)
    proc.stdout.close()
    assert status == -15
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.02)
    assert not _alive(child)
    assert stop(proc) == -15  # idempotent


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    proc = start(["/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"], tmp_path,
                 stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    assert stop(proc, grace=0.2) == -9
    proc.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
