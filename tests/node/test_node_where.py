"""One rule for local versus cluster, verb by verb, as a user meets it.

A registry advertised over zeroconf (on loopback) and two nodes serving a disk `d0.zz` (master
on n0, replica on n1) and the cpu disks `d0.cpu`, `d1.cpu`. Every command runs as a subprocess
with a fresh HOME holding only the cluster's secret (copied there, as the README says), no
$GERYON_REGISTRY and no ndb file: `--registry` is not given, so each verb must find the cluster
itself, or stay on this machine when what it names is here, or when `--local` says so.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node_helpers import GERYON, Cluster, wait_until
from tests.faults.fault_helpers import fill_chunk

FILES = {f"f{i}.txt": f"alpha beta {i}\nbeta gamma\n".encode() for i in range(4)}
MAP = "def map(key, value):\n    for w in value.split():\n        yield w, 1\n"
REDUCE = "def reduce(key, values):\n    return sum(values)\n"


class World:
    def __init__(self, cluster: Cluster, root: Path) -> None:
        self.cluster, self.root = cluster, root
        self.home = root / "home"
        (self.home / ".config" / "geryon").mkdir(parents=True)
        shutil.copy(cluster.secret_file, self.home / ".config" / "geryon" / "secret")
        os.chmod(self.home / ".config" / "geryon" / "secret", 0o600)
        self.work = root / "work"
        self.work.mkdir()
        (self.work / "map.py").write_text(MAP)
        (self.work / "reduce.py").write_text(REDUCE)
        here = self.work / "here"
        here.mkdir()
        for name, data in FILES.items():
            (here / name).write_bytes(data)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GERYON_") and not k.startswith("XDG_")}
        env.update({"HOME": str(self.home), "GERYON_MDNS_INTERFACES": "127.0.0.1"})
        return env

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GERYON, *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env(), cwd=self.work)

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90,
                              env=self.env(), cwd=self.work)

    def jobs(self) -> list[dict[str, Any]]:
        r = self.run("jobs", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout or "[]")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from registry.auth import create_secret

    root = tmp_path_factory.mktemp("where")
    create_secret(root / "secret")
    c = Cluster(root, root / "secret")
    try:
        c.start_registry(mdns_interface="127.0.0.1")
        n0 = c.start_node("n0", ("zdata", "out0"), extra=["--cpus", "2"])
        n1 = c.start_node("n1", ("rep", "out1"), extra=["--cpus", "2"])
        fill_chunk(n0.chunks["zdata"], FILES)
        fill_chunk(n1.chunks["rep"], FILES)
        c.name_disks("name=d0.zz kfs master=n0!zdata replica=d0.zz.r\n"
                     "name=d0.zz.r kfs master=n1!rep\n"
                     "name=d0.cpu kfs master=n0!out0\nname=d1.cpu kfs master=n1!out1\n")
        client = c.client()
        try:
            wait_until(lambda: len([s for s in client.find({"chunk": "*"}) if s.get("addr")]) == 4, 20)
            wait_until(lambda: len(client.find({"svc": "rstyx"})) == 2, 20)
        finally:
            client.close()
        yield World(c, root)
    finally:
        c.stop()


def _counts(stdout: str) -> int:
    return sum(c["nodes"] for c in json.loads(stdout))


def test_status_finds_the_cluster_over_zeroconf(world: World) -> None:
    r = world.run("status", "--json")
    assert r.returncode == 0, r.stderr
    assert _counts(r.stdout) == 2
    r = world.run("status", "--local", "--json")
    assert r.returncode == 0, r.stderr
    assert _counts(r.stdout) == 1


def test_exec_runs_on_the_cluster_found_over_zeroconf(world: World) -> None:
    r = world.run("exec", "-n", "3", "--", "echo $GERYON_NODE")
    assert r.returncode == 0, r.stderr
    assert sorted(set(r.stdout.split())) == ["n0", "n1"]
    r = world.run("exec", "--local", "-n", "1", "--", "echo $GERYON_NODE")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [os.uname().nodename]


def test_python_session_follows_the_same_rule(world: World) -> None:
    code = ("import geryon\n"
            "with geryon.session() as s:\n"
            "    s.reserve(3); s.exec('echo $GERYON_NODE'); print(sorted(set(s.stdout.read().decode().split()))); s.wait()\n"
            "with geryon.session(local=True) as s:\n"
            "    s.reserve(1); s.exec('echo $GERYON_NODE'); print(s.stdout.read().decode().split()); s.wait()\n")
    r = world.python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["['n0', 'n1']", f"[{os.uname().nodename!r}]"]


def test_ls_and_disk_check_find_a_cluster_disk(world: World) -> None:
    r = world.run("ls", "d0.zz")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted(FILES)
    r = world.run("disk", "check", "d0.zz")
    assert r.returncode == 0, r.stderr
    assert f"d0.zz: {len(FILES)} files verified, ok (n0!zdata)" in r.stderr, r.stderr
    r = world.run("ls", "--local", "d0.zz")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "d0.zz: unknown disk" in r.stderr
    r = world.run("ls", "here")                               # a directory here: here, whatever answers
    assert r.returncode == 0 and r.stdout.split() == sorted(FILES), r.stderr


def test_mapreduce_local_data_stays_here_and_names_go_to_the_cluster(world: World) -> None:
    r = world.run("mapreduce", "-q", "--name", "local", "map.py", "reduce.py", "here")
    assert r.returncode == 0, r.stderr
    r = world.run("mapreduce", "-q", "--name", "remote", "--out", "remote.out", "map.py", "reduce.py", "d0.zz")
    assert r.returncode == 0, r.stderr
    modes = {j["name"]: j["mode"] for j in world.jobs()}
    assert modes["local"] == "local" and modes["remote"] == "cluster"
    assert (world.work / "local.out" / "part-00000").read_text() == \
        (world.work / "remote.out" / "part-00000").read_text()
    # a glob of the cluster's disk names
    r = world.run("mapreduce", "-q", "--name", "globbed", "--out", "globbed.out", "map.py", "reduce.py", "d0.z?")
    assert r.returncode == 0, r.stderr
    assert (world.work / "globbed.out" / "part-00000").read_text() == \
        (world.work / "remote.out" / "part-00000").read_text()


def test_a_mistyped_disk_fails_in_one_line_and_is_not_recorded(world: World) -> None:
    before = len(world.jobs())
    for extra in ((), ("--registry", world.cluster.registry_url)):
        t0 = time.monotonic()
        r = world.run("mapreduce", "-q", *extra, "map.py", "reduce.py", "d0.zzz")
        print(f"MEASURED mistyped disk, {' '.join(extra[:1]) or 'zeroconf'}: {time.monotonic() - t0:.2f}s")
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("geryon: d0.zzz: unknown disk"), r.stderr
    assert len(world.jobs()) == before


def test_a_local_ndb_syntax_error_is_reported_when_a_cluster_answers(world: World) -> None:
    (world.work / "bad.ndb").write_text("name=d9 path=/nowhere\nname d1 = =\n")
    for extra in ((), ("--registry", world.cluster.registry_url)):
        r = world.run("mapreduce", "-q", "--ndb", "bad.ndb", *extra, "map.py", "reduce.py", "d0.zz")
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("geryon: bad.ndb:2: "), r.stderr


def test_a_local_file_for_a_cluster_job_is_refused_with_what_to_do(world: World) -> None:
    r = world.run("mapreduce", "-q", "--registry", world.cluster.registry_url, "map.py", "reduce.py", "here/f0.txt")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "here/f0.txt is a path on this machine" in r.stderr, r.stderr
    assert "geryon load --cluster" in r.stderr and "--local" in r.stderr
    # the same file with no --registry is local data: it runs here, whatever answers
    r = world.run("mapreduce", "-q", "--name", "onefile", "map.py", "reduce.py", "here/f0.txt")
    assert r.returncode == 0, r.stderr

