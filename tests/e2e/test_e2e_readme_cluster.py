"""The README's "Running on a cluster", followed as a user would, on three machines.

Three network namespaces joined by a bridge, each with its own address (10.79.0.1-3): the
registry, node n0 and the user's shell in the first, n1 and n2 in the others; zeroconf finds
the registry across them (nodes and `geryon mapreduce` get no --registry). Every node
serves two disks named the user's way, in an order that is not the README's (`zdata`,
`aaa-scratch`), given as empty directories (the node makes them chunks); the host name
resolves to loopback in every namespace, and no node is told its address. `geryon load
--cluster` puts a mailbox built with Python's `mailbox` module on them (two copies of each
chunk), named in the registry's default ndb file. Only the flags the README shows are
passed: the secret, config and temporary directories of each "machine" come from the
environment. The seed's command then runs twice (counting
the README's words of each message: the disks say they hold mail) and a chained job reads the first run's output (`geryon-output-of-JOB`): both runs give the same
bytes, equal to a sequential count, and every input chunk (master and replica) keeps its
file list and checksums. Then two jobs of the same name run at once: each gets its own
complete output. Needs root and iproute2 (CI runs as root).
"""
from __future__ import annotations

import collections
import hashlib
import json
import mailbox
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.node_helpers import GERYON, Cluster, Proc, wait_until

# The installed command, as the README's user types it (`python -c` would put the current
# directory first on sys.path).
SCRIPT = os.path.join(os.path.dirname(sys.executable), "geryon")
COMMAND = [SCRIPT] if os.path.exists(SCRIPT) else GERYON

# README "Writing a job": map.py and reduce.py, as written there.
MAP = """# map.py: called once per record; return a mapping, or return/yield (key, value) pairs
from collections import Counter
def map(key, value):
    return Counter(value.split())
"""

REDUCE = """# reduce.py: called once per key, in key order; return a value, or yield (key, value) pairs
def reduce(key, values):        # values is an iterator: a hot key is never held whole
    return sum(values)
combine = reduce                 # optional: runs on the map side (Hadoop's combiner)
"""

LENGTHS = '''def map(key, value):
    word, n = value.split("\\t")
    yield len(word), int(n)


def reduce(key, values):
    return sum(values)
'''

WORDS = [f"w_{a}{b}" for a in "abcdefghij" for b in ("", "x", "yy", "zzz")]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def hosts() -> Iterator[list[list[str]]]:
    """Three namespaces on one bridge (in a fourth): the `ip netns exec` prefix of each."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root for network namespaces (CI runs as root)")
    tag = f"{os.getpid() % 100000}"
    hub = f"gne-h{tag}"
    spaces = [f"gne-{i}{tag}" for i in range(3)]
    made: list[str] = []
    try:
        for ns in (hub, *spaces):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", hub, "link", "add", "br0", "type", "bridge")
        ip("-n", hub, "link", "set", "br0", "up")
        for i, ns in enumerate(spaces):
            outer, inner = f"gneo{i}{tag}", f"gnei{i}{tag}"
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", outer, "netns", hub)
            ip("-n", hub, "link", "set", outer, "master", "br0")
            ip("-n", hub, "link", "set", outer, "up")
            ip("link", "set", inner, "netns", ns)
            ip("-n", ns, "addr", "add", f"10.79.0.{i + 1}/24", "dev", inner)
            ip("-n", ns, "link", "set", inner, "up")
            ip("-n", ns, "route", "add", "default", "dev", inner)   # multicast (zeroconf) leaves here
        yield [["ip", "netns", "exec", ns] for ns in spaces]
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _mailbox(path: Path, messages: int = 1300) -> collections.Counter:
    """An mbox written by Python's `mailbox` module (1-2 MB: two 1M chunks); the README's word
    count of its messages as the mbox reader gives them (headers and body, From_ line dropped,
    `>From ` unquoted)."""
    rng = random.Random(12)
    box = mailbox.mbox(str(path))
    counts: collections.Counter = collections.Counter()
    for i in range(messages):
        body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 16)))
                         for _ in range(rng.randrange(10, 30)))
        if i % 7 == 0:
            body = "From the start of a line, quoted by mailbox\n" + body
        msg = mailbox.mboxMessage()
        msg["From"] = f"user{i % 13}@example.org"
        msg["Subject"] = f"message {i}"
        msg["Message-ID"] = f"<{i}@example.org>"
        msg.set_payload(body + "\n")
        box.add(msg)
        counts.update(f"From: user{i % 13}@example.org\nSubject: message {i}\nMessage-ID: <{i}@example.org>\n\n"
                      f"{body}\n".split())
    box.flush()
    box.close()
    assert 1 << 20 < path.stat().st_size < 2 << 20
    return counts


def _snapshot(chunks: list[Path]) -> dict[str, dict[str, str]]:
    """Every file of each chunk (bookkeeping included) with its sha256."""
    out = {}
    for chunk in chunks:
        files = {}
        for p in sorted(chunk.rglob("*")):
            if p.is_file():
                files[str(p.relative_to(chunk))] = hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(chunk)] = files
    return out


def _parts(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("part-*"))}


def _counts(parts: dict[str, bytes]) -> dict[str, int]:
    got: dict[str, int] = {}
    for data in parts.values():
        for line in data.decode().splitlines():
            k, v = line.split("\t")
            assert k not in got, f"{k} in two parts"
            got[k] = int(v)
    return got


def test_readme_cluster_with_user_disk_names(hosts: list[list[str]], tmp_path: Path, secret_file: Path) -> None:
    c = Cluster(tmp_path, secret_file)
    user = tmp_path / "user"
    user.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    # The secret copied to each machine, and each machine's own config and temporary directories
    # (every namespace shares this file system; the README's steps pass no flag for any of it).
    base.update({"GERYON_SECRET_FILE": str(secret_file), "GERYON_JOBS_DIR": str(tmp_path / "jobs")})

    def machine(i: int) -> dict[str, str]:
        tmp = tmp_path / f"tmp-{i}"
        tmp.mkdir(exist_ok=True)
        return {**base, "XDG_CONFIG_HOME": str(tmp_path / f"config-{i}"), "TMPDIR": str(tmp),
                "GERYON_MDNS_INTERFACES": f"10.79.0.{i + 1}"}

    def daemon(argv: list[str], tag: str, i: int) -> Proc:
        p = Proc(argv, tmp_path / f"{tag}.err", env=machine(i), prefix=hosts[i])
        c.procs.append(p)               # stopped by c.stop()
        return p

    def geryon(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*hosts[0], *COMMAND, *args], capture_output=True, text=True, cwd=user,
                              env=machine(0), timeout=timeout)

    try:
        # geryon registry serve   (one machine; found over zeroconf)
        reg = daemon([*COMMAND, "registry", "serve"], "registry", 0)
        assert "listening on" in reg.readline(30), reg.stderr()
        ndb = tmp_path / "config-0" / "geryon" / "cluster.ndb"      # its default, beside the secret
        assert f"disks named in {ndb}" in reg.stderr()
        # geryon node --name nI --disk zdata=DIR --disk aaa-scratch=DIR   (every machine; empty directories)
        disks: dict[str, dict[str, Path]] = {}
        for i in range(3):
            name = f"n{i}"
            disks[name] = {}
            for chunk in ("zdata", "aaa-scratch"):
                disks[name][chunk] = tmp_path / f"{name}-{chunk}"
                disks[name][chunk].mkdir()
            node = daemon([*COMMAND, "node", "--name", name, "--disk", f"zdata={disks[name]['zdata']}",
                           "--disk", f"aaa-scratch={disks[name]['aaa-scratch']}"], f"node-{name}", i)
            line = node.readline(60)
            assert f"listening on http://10.79.0.{i + 1}:6676" in line, line + node.stderr()   # its own address

        def registered() -> bool:
            r = geryon("services", timeout=30)
            return r.returncode == 0 and r.stdout.count("svc rstyx") == 3 and r.stdout.count("resource kfs") == 6
        wait_until(registered, 90, interval=0.5)
        services = geryon("services").stdout
        assert all(f"tcp!10.79.0.{i}!6676 " in services for i in (1, 2, 3)), services

        # geryon load mail.mbox --app mbox --cluster --chunk 1M --replicas 2   (anywhere)
        expected = _mailbox(user / "mail.mbox")
        loaded = geryon("load", "mail.mbox", "--app", "mbox", "--cluster", "--chunk", "1M", "--replicas", "2")
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.split() == ["d0.mbox", "d1.mbox"], loaded.stdout + loaded.stderr
        assert f"named in the registry's {ndb}" in loaded.stderr
        from geryon.disks.diskdb import read_disks
        named = read_disks(str(ndb))
        assert sorted(d.name for d in named) == ["d0.mbox", "d0.mbox.r1", "d1.mbox", "d1.mbox.r1"]
        assert {d.format for d in named} == {"mbox"}
        inputs = sorted({disks[d.host][d.chunk] for d in named if d.host in disks})
        assert len(inputs) == 4
        before = _snapshot(inputs)

        (user / "map.py").write_text(MAP)
        (user / "reduce.py").write_text(REDUCE)
        (user / "lengths.py").write_text(LENGTHS)
        for k in range(2):   # geryon mapreduce map.py reduce.py d0.mbox d1.mbox --out result/   (twice)
            r = geryon("mapreduce", "map.py", "reduce.py", "d0.mbox", "d1.mbox", "--out", f"result{k}/")
            assert r.returncode == 0, r.stderr
        first, second = _parts(user / "result0"), _parts(user / "result1")
        assert first == second and len(first) == 5
        assert _counts(first) == dict(expected)                # messages, not mbox chunk files
        assert _snapshot(inputs) == before                     # the inputs are untouched, masters and replicas
        job_ids = [json.loads((user / f"result{k}" / "_SUCCESS").read_text())["job"] for k in range(2)]
        assert job_ids[0] != job_ids[1]

        chained = geryon("mapreduce", "--reader", "lines", "-R", "2", "lengths.py", "lengths.py",
                         f"geryon-output-of-{job_ids[0]}", "--out", "lengths")
        assert chained.returncode == 0, chained.stderr
        by_length: collections.Counter = collections.Counter()
        for word, n in expected.items():
            by_length[str(len(word))] += n
        assert _counts(_parts(user / "lengths")) == dict(by_length)
        assert _snapshot(inputs) == before

        # two jobs of the same name at once: each its own complete output, on the nodes
        both = [subprocess.Popen([*hosts[0], *COMMAND, "mapreduce", "--name", "same", "map.py", "reduce.py",
                                  "d0.mbox", "d1.mbox"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=user, env=machine(0)) for _ in range(2)]
        outs = [p.communicate(timeout=240) for p in both]
        assert all(p.returncode == 0 for p in both), [o[1] for o in outs]
        urls = [[u for u in o[0].split() if u.startswith("geryon://")] for o in outs]
        assert all(len(u) == 5 for u in urls) and not set(urls[0]) & set(urls[1]), urls
        listed = json.loads(geryon("jobs", "--json").stdout)
        same = [j["id"] for j in listed if j.get("name") == "same"]
        assert len(same) == 2 and same[0] != same[1]
        for job_id in same:
            record = json.loads(geryon("jobs", job_id, "--json").stdout)
            mine = record["summary"]["urls"]
            assert mine in urls and all(f"/{job_id}/part-{r:05d}" in u for r, u in enumerate(mine)), mine
            # each output is complete and only its own: read it back as the next job's input
            got = geryon("mapreduce", "--reader", "lines", "-R", "1", "lengths.py", "lengths.py",
                         f"geryon-output-of-{job_id}", "--out", f"same-{job_id}")
            assert got.returncode == 0, got.stderr
            assert _counts(_parts(user / f"same-{job_id}")) == dict(by_length)
        assert _snapshot(inputs) == before
        # nothing of any job's intermediate data is left on a node
        every_job = {j["id"] for j in json.loads(geryon("jobs", "--json").stdout)}
        assert len(every_job) == 7      # 2 seed runs, 1 chained, 2 of the same name, 2 read-backs
        work_dirs = [w for i in range(3) for w in (tmp_path / f"tmp-{i}").glob(f"geryon-node-n{i}-*")]
        assert len(work_dirs) == 3, work_dirs
        for root in [*(d for n in disks.values() for d in n.values()), *work_dirs]:
            left = [p for p in root.rglob(".geryon-tmp-*") if p.name in {f".geryon-tmp-{j}" for j in every_job}]
            assert not left, left
    finally:
        c.stop()
