"""The README's "Running on a cluster", followed as a user would, on three machines.

Three network namespaces joined by a bridge, each with its own address (10.79.0.1-3): the
registry, node n0 and the user's shell in the first, n1 and n2 in the others; zeroconf finds
the registry across them (nodes and `geryon mapreduce` get no --registry). Every node
serves two chunk disks named the user's way, in an order that is not the README's
(`zdata`, `aaa-scratch`); `geryon load --cluster` puts a mailbox built with Python's
`mailbox` module on them (two copies of each chunk). The seed's command then runs twice and
a chained job reads the first run's output (`geryon-output-of-JOB`): both runs give the same
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
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.node_helpers import GERYON, Cluster, wait_until

MAP = '''from collections import Counter


def map(key, value):
    return Counter(w for w in value.split() if w.startswith("w_"))
'''

REDUCE = '''def reduce(key, values):
    return sum(values)
'''

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


def _mailbox(path: Path, messages: int = 400) -> collections.Counter:
    """An mbox written by Python's `mailbox` module; the `w_` words of its bodies, counted."""
    rng = random.Random(12)
    box = mailbox.mbox(str(path))
    counts: collections.Counter = collections.Counter()
    for i in range(messages):
        body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 16)))
                         for _ in range(rng.randrange(3, 30)))
        if i % 7 == 0:
            body = "From the start of a line, quoted by mailbox\n" + body
        msg = mailbox.mboxMessage()
        msg["From"] = f"user{i % 13}@example.org"
        msg["Subject"] = f"message {i}"
        msg["Message-ID"] = f"<{i}@example.org>"
        msg.set_payload(body + "\n")
        box.add(msg)
        counts.update(w for w in body.split() if w.startswith("w_"))
    box.flush()
    box.close()
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"GERYON_SECRET_FILE": str(secret_file), "GERYON_JOBS_DIR": str(tmp_path / "jobs"),
                "GERYON_MDNS_INTERFACES": "10.79.0.1", "XDG_CONFIG_HOME": str(tmp_path / "config")})

    def geryon(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*hosts[0], *GERYON, *args], capture_output=True, text=True, cwd=user, env=env,
                              timeout=timeout)

    try:
        # geryon registry serve --ndb cluster.ndb   (one machine; found over zeroconf)
        ndb = user / "cluster.ndb"
        ndb.write_text("")
        reg = c._proc([*GERYON, "registry", "serve", "--ndb", str(ndb), "--listen", "10.79.0.1:0",
                       "--mdns-interface", "10.79.0.1", "--secret-file", str(secret_file),
                       "--heartbeat", "0.2", "--dead-after", "1"], "registry", hosts[0])
        assert "listening on" in reg.readline(), reg.stderr()
        # geryon node --name nI --disk zdata=... --disk aaa-scratch=...   (every machine, no --registry)
        disks: dict[str, dict[str, Path]] = {}
        for i, prefix in enumerate(hosts):
            name = f"n{i}"
            disks[name] = {}
            for chunk in ("zdata", "aaa-scratch"):
                path = tmp_path / f"{name}-{chunk}"
                made = subprocess.run([*GERYON, "disk", "new", str(path), "--size", "8M"], capture_output=True,
                                      text=True, env=env, timeout=60)
                assert made.returncode == 0, made.stderr
                disks[name][chunk] = path
            node = c._proc([*GERYON, "node", "--name", name, "--listen", f"10.79.0.{i + 1}:0",
                            "--disk", f"zdata={disks[name]['zdata']}",
                            "--disk", f"aaa-scratch={disks[name]['aaa-scratch']}",
                            "--work-dir", str(tmp_path / f"work-{name}"), "--refresh", "0.2",
                            "--secret-file", str(secret_file)], f"node-{name}", prefix)
            line = node.readline(30)
            assert f"listening on http://10.79.0.{i + 1}:" in line, line + node.stderr()

        def registered() -> bool:
            r = geryon("services", timeout=30)
            return r.returncode == 0 and r.stdout.count("svc rstyx") == 3
        wait_until(registered, 60, interval=0.5)

        # geryon load mail.mbox --app mbox --cluster   (real mail, two copies of each chunk)
        expected = _mailbox(user / "mail.mbox")
        loaded = geryon("load", "mail.mbox", "--app", "mbox", "--cluster", "--replicas", "2", "--chunk", "256K",
                        "--ndb", str(ndb), "-q")
        assert loaded.returncode == 0, loaded.stderr
        names = loaded.stdout.split()
        assert len(names) >= 2 and names[0] == "d0.mbox", loaded.stdout
        from geryon.diskdb import read_disks
        named = read_disks(str(ndb))
        inputs = sorted({disks[d.host][d.chunk] for d in named if d.host in disks})
        assert len(inputs) >= 2
        before = _snapshot(inputs)

        (user / "map.py").write_text(MAP)
        (user / "reduce.py").write_text(REDUCE)
        (user / "lengths.py").write_text(LENGTHS)
        runs = []
        for k in range(2):   # the seed's command, twice
            r = geryon("mapreduce", "map.py", "reduce.py", *names, "--out", f"result{k}")
            assert r.returncode == 0, r.stderr
            runs.append(r)
        first, second = _parts(user / "result0"), _parts(user / "result1")
        assert first == second and len(first) == 5
        assert _counts(first) == dict(expected)
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
        both = [subprocess.Popen([*hosts[0], *GERYON, "mapreduce", "-q", "--name", "same", "map.py", "reduce.py",
                                  *names], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=user,
                                 env=env) for _ in range(2)]
        outs = [p.communicate(timeout=240) for p in both]
        assert all(p.returncode == 0 for p in both), [o[1] for o in outs]
        urls = [o[0].split() for o in outs]
        assert all(len(u) == 5 for u in urls) and not set(urls[0]) & set(urls[1])
        listed = json.loads(geryon("jobs", "--json").stdout)
        same = [j["id"] for j in listed if j.get("name") == "same"]
        assert len(same) == 2 and same[0] != same[1]
        for job_id in same:
            record = json.loads(geryon("jobs", job_id, "--json").stdout)
            mine = record["summary"]["urls"]
            assert mine in urls and all(f"/{job_id}/part-{r:05d}" in u for r, u in enumerate(mine)), mine
            # each output is complete and only its own: read it back as the next job's input
            got = geryon("mapreduce", "-q", "--reader", "lines", "-R", "1", "lengths.py", "lengths.py",
                         f"geryon-output-of-{job_id}", "--out", f"same-{job_id}")
            assert got.returncode == 0, got.stderr
            assert _counts(_parts(user / f"same-{job_id}")) == dict(by_length)
        assert _snapshot(inputs) == before
        # nothing of any job's intermediate data is left on a node
        every_job = {j["id"] for j in json.loads(geryon("jobs", "--json").stdout)}
        assert len(every_job) == 7      # 2 seed runs, 1 chained, 2 of the same name, 2 read-backs
        for name in disks:
            for root in (*disks[name].values(), tmp_path / f"work-{name}" / "output"):
                assert not [p for p in root.iterdir() if p.name in {f".geryon-tmp-{j}" for j in every_job}], root
    finally:
        c.stop()
