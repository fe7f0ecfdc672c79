"""`geryon taskfs MOUNTPOINT`: the seed's clone/ctl/stdio walk-through, from a shell and from
a C-like client holding the clone descriptor (needs /dev/fuse and fusermount3, from fuse3).

Each test mounts under its tmp_path and always unmounts; the tree must be left idle.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfs_helpers import GERYON, Proc, Tree, pid_gone, start_proc, timed, wait_until

FILES = ["ctl", "peers", "status", "stderr", "stdio", "wait"]


@pytest.fixture
def taskfs(tree: Tree, tmp_path: Path) -> Iterator[tuple[Path, Proc]]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = start_proc(tree.c, [*GERYON, "taskfs", str(mnt), "--node", tree.root.url], "taskfs")
    proc.expected_exit = True                         # it ends when unmounted
    try:
        line = proc.readline(30)
        assert line == f"taskfs mounted on {mnt}\n", line + proc.stderr()
        yield mnt, proc
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        try:
            proc.popen.wait(10)
        finally:
            if os.path.ismount(mnt):
                subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


def _read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 4096):
        out += chunk
    return out


SHELL = """
set -e
cd "$1"
exec 3<>clone
read n <&3
echo "session $n"
ls "$n" | tr '\\n' ' '; echo
echo "res 4" >&3
echo "exec hostname" >&3
cat "$n/stdio"
cat "$n/wait"
exec 3>&-
"""


def test_the_seeds_walk_through_from_a_shell(taskfs: tuple[Path, Proc], tree: Tree) -> None:
    mnt, _ = taskfs
    assert sorted(os.listdir(mnt)) == ["clone", "status"]
    r = subprocess.run(["bash", "-c", SHELL, "sh", str(mnt)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "session 0" and lines[1].split() == FILES
    host = os.uname().nodename
    assert lines[2:6] == [host] * 4
    assert sorted(lines[6:]) == ["0 root 0", "1 a 0", "2 g 0", "3 b 0"]
    wait_until(lambda: sorted(os.listdir(mnt)) == ["clone", "status"], 10)         # closed: released


def test_a_c_like_client_on_the_held_descriptor(taskfs: tuple[Path, Proc], tree: Tree) -> None:
    mnt, _ = taskfs
    fd = os.open(mnt / "clone", os.O_RDWR)
    try:
        n = os.read(fd, 64).decode().strip()
        assert n.isdigit() and sorted(os.listdir(mnt / n)) == FILES
        with pytest.raises(OSError) as exc:
            os.write(fd, b"exec hostname\n")                          # before res
        assert exc.value.errno == errno.EINVAL
        with pytest.raises(OSError) as exc:
            os.write(fd, b"res 9\n")
        assert exc.value.errno == errno.EAGAIN
        status = (mnt / n / "status").read_text().splitlines()
        assert status[0].split()[2] == "Unreserved"
        assert status[-1] == "error no resources matching request: 9 instances wanted, 4 free"
        assert os.write(fd, b"res 2\n") == 6 and os.write(fd, b"exec wc -l\n") == 11
        w = os.open(mnt / n / "stdio", os.O_WRONLY)
        os.write(w, b"one\ntwo\nthree\n")
        os.close(w)                                                   # the last writer: end of input
        r = os.open(mnt / n / "stdio", os.O_RDONLY)
        assert _read_all(r) == b"3\n3\n"
        os.close(r)
        assert len((mnt / n / "peers").read_text().splitlines()) == 2
        assert [line.split()[:3] for line in (mnt / n / "status").read_text().splitlines()] == [
            ["0", "root", "Done"], ["1", "a", "Done"]]
    finally:
        os.close(fd)
    wait_until(lambda: n not in os.listdir(mnt), 10)


def test_top_level_status_and_killonclose(taskfs: tuple[Path, Proc], tree: Tree) -> None:
    mnt, _ = taskfs
    assert (mnt / "status").read_text() == tree.cli("status", "--node", tree.root.url).stdout
    fd = os.open(mnt / "clone", os.O_RDWR)
    try:
        n = os.read(fd, 64).decode().strip()
        os.write(fd, b"killonclose\nres 4\nexec sleep 300\n")
        pids = wait_until(lambda: [p for v in tree.usage().values() for p in v[2]] if
                          sum(len(v[2]) for v in tree.usage().values()) == 4 else None, 10)
        assert {line.split()[2] for line in (mnt / n / "status").read_text().splitlines()} == {"Execute"}
    finally:
        os.close(fd)
    took = timed(lambda: all(pid_gone(p) for p in pids) and tree.idle(), 5)
    print(f"closing the clone descriptor released everything in {took:.2f}s")
    wait_until(lambda: n not in os.listdir(mnt), 5)


def test_stopping_the_server_kills_and_releases_every_session(taskfs: tuple[Path, Proc], tree: Tree) -> None:
    mnt, proc = taskfs
    fd = os.open(mnt / "clone", os.O_RDWR)
    try:
        os.write(fd, b"res 2\nexec sleep 300\n")
        wait_until(lambda: sum(len(v[2]) for v in tree.usage().values()) == 2, 10)
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(20) == 0
    finally:
        with pytest.raises(OSError) as exc:              # the server is gone: ENOTCONN
            os.close(fd)
    assert exc.value.errno == errno.ENOTCONN
    wait_until(tree.idle, 5)
