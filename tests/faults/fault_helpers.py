"""A real cluster for the fault tests: a registry, three node daemons, replicated input disks.

Each input disk `dK.t` has its master on node `n{K%3}` (chunk `inK`) and a replica on the
next node (chunk `repK`), both with checksum manifests, named in the registry's ndb file.
Every node also has an output chunk `c0`, named `d<i>.cpu` in the ndb file (the seed's
cpu disks), so map outputs and parts land there and never on an input chunk. `run_job` starts `geryon mapreduce` against the cluster as a
subprocess, so that tests can hurt the cluster while it runs; `reference` runs the same
job in local mode on the same files.
"""
from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from geryon.errors import GeryonError
from tests.node.node_helpers import Cluster, Node, wait_until

GERYON = [sys.executable, "-c", "from geryon.cli import main; main()"]

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
         "sigma tau upsilon phi chi psi omega red green blue cyan magenta yellow black white").split()

MAP_PY = '''"""Word count with pauses, so that faults land while tasks run."""
import os
import time
from collections import Counter

DELAY = {delay}
REDUCE_START = {reduce_start}
REDUCE_DELAY = {reduce_delay}

if REDUCE_START and os.environ.get("GERYON_TASK", "").startswith("r"):
    time.sleep(REDUCE_START)  # reducers wait before they fetch anything


def map(key, value):
    if DELAY:
        time.sleep(DELAY)
    return Counter(value.split())


def reduce(key, values):
    if REDUCE_DELAY:
        time.sleep(REDUCE_DELAY)
    return sum(values)


def combine(key, values):
    return sum(values)
'''


def write_corpus(root: Path, disks: int, files: int, lines: int, seed: int = 7) -> dict[str, dict[str, bytes]]:
    """Text files per disk: {disk name: {relative path: bytes}} (also written nowhere yet)."""
    rng = random.Random(seed)
    out: dict[str, dict[str, bytes]] = {}
    for k in range(disks):
        files_of: dict[str, bytes] = {}
        for f in range(files):
            text = "\n".join(" ".join(rng.choice(WORDS) + (str(rng.randrange(50)) if rng.random() < 0.3 else "")
                                      for _ in range(rng.randrange(3, 12))) for _ in range(lines))
            files_of[f"f{f:02d}.txt"] = (text + "\n").encode()
        out[f"d{k}.t"] = files_of
    return out


def fill_chunk(path: Path, files: dict[str, bytes]) -> None:
    """Put files into a chunk directory and record their checksums."""
    from geryon.disks.checksum import record_files

    for rel, data in files.items():
        (path / rel).write_bytes(data)
    record_files(str(path), list(files))


class FaultCluster(Cluster):
    """The three-node cluster with replicated disks; see the module docstring."""

    def __init__(self, tmp_path: Path, secret_file: Path, corpus: dict[str, dict[str, bytes]]) -> None:
        super().__init__(tmp_path, secret_file)
        self.corpus = corpus
        self.node_args: dict[str, tuple[list[str], list[str]]] = {}
        self.jobs_dir = tmp_path / "jobs"
        self.mdns = False

    def start_registry(self, host: str = "127.0.0.1", prefix: Any = (), port: int = 0,
                       mdns_interface: str | None = None) -> Any:
        """The registry; with `mdns`, advertised over zeroconf on loopback."""
        return super().start_registry(host, prefix, port, mdns_interface or ("127.0.0.1" if self.mdns else None))

    def start(self, nodes: int = 3, cpus: int = 2, out_chunk: dict[str, Path] | None = None,
              out_capacity: int = 64 << 20, node_extra: tuple[str, ...] = ()) -> None:
        self.start_registry()
        disks = sorted(self.corpus)
        chunks_of: dict[str, list[str]] = {f"n{i}": ["c0"] for i in range(nodes)}
        ndb_lines = []
        for k, name in enumerate(disks):
            master, replica = f"n{k % nodes}", f"n{(k + 1) % nodes}"
            chunks_of[master].append(f"in{k}")
            chunks_of[replica].append(f"rep{k}")
            ndb_lines.append(f"name={name} kfs master={master}!in{k} replica={name}.r\n")
            ndb_lines.append(f"name={name}.r kfs master={replica}!rep{k}\n")
        ndb_lines += [f"name=d{i}.cpu kfs master=n{i}!c0\n" for i in range(nodes)]
        for i in range(nodes):
            name = f"n{i}"
            self.start_cluster_node(name, chunks_of[name], cpus, (out_chunk or {}).get(name), out_capacity, node_extra)
        for k, disk in enumerate(disks):
            fill_chunk(self.nodes[f"n{k % nodes}"].chunks[f"in{k}"], self.corpus[disk])
            fill_chunk(self.nodes[f"n{(k + 1) % nodes}"].chunks[f"rep{k}"], self.corpus[disk])
        self.name_disks("".join(ndb_lines))
        client = self.client()
        try:
            wait_until(lambda: len([s for s in client.find({"chunk": "*"}) if s.get("addr")]) == 2 * len(disks) + nodes,
                       15)
            wait_until(lambda: len(client.find({"svc": "rstyx"})) == nodes, 15)
        finally:
            client.close()

    def start_cluster_node(self, name: str, chunks: list[str], cpus: int, out_chunk: Path | None = None,
                           out_capacity: int = 64 << 20, node_extra: tuple[str, ...] = ()) -> Node:
        extra = ["--cpus", str(cpus), *node_extra]
        if out_chunk is not None:
            # the output chunk lives elsewhere (a tiny tmpfs): pass it as c0 ourselves
            from geryon.disks.chunk import create_chunk

            if not (out_chunk / ".geryon-disk").exists():
                create_chunk(str(out_chunk), out_capacity)
            extra += ["--disk", f"c0={out_chunk}"]
            chunks = [c for c in chunks if c != "c0"]
        node = self.start_node(name, chunks, extra=extra)
        if out_chunk is not None:
            node.chunks["c0"] = out_chunk
        self.node_args[name] = (chunks, extra)
        return node

    def restart_node(self, name: str) -> Node:
        chunks, extra = self.node_args[name]
        return self.start_node(name, chunks, extra=extra)

    def node_pids(self, name: str) -> list[int]:
        """The node daemon and its worker processes."""
        pid = self.nodes[name].proc.popen.pid
        return [pid, *workers_of(pid)]

    def job_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        env.update({"GERYON_REGISTRY": self.registry_url, "GERYON_SECRET_FILE": str(self.secret_file),
                    "GERYON_JOBS_DIR": str(self.jobs_dir), "XDG_CONFIG_HOME": str(self.tmp / "config")})
        return env

    def job_dir(self, delay: float = 0.0, reduce_start: float = 0.0, reduce_delay: float = 0.0) -> Path:
        d = self.tmp / f"job-{delay}-{reduce_start}-{reduce_delay}"
        if not d.exists():
            d.mkdir()
            (d / "wc.py").write_text(MAP_PY.format(delay=delay, reduce_start=reduce_start, reduce_delay=reduce_delay))
        return d

    def start_job(self, out: Path, delay: float = 0.0, partitions: int = 3, extra: tuple[str, ...] = (),
                  disks: list[str] | None = None, reduce_start: float = 0.0,
                  reduce_delay: float = 0.0) -> subprocess.Popen[str]:
        d = self.job_dir(delay, reduce_start, reduce_delay)
        argv = [*GERYON, "mapreduce", "-q", "--name", "wc", "-R", str(partitions), "--out", str(out),
                "--lease", "2", *extra, str(d / "wc.py"), str(d / "wc.py"), *(disks or sorted(self.corpus))]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.job_env(), cwd=self.tmp)

    def reference(self, partitions: int = 3) -> Path:
        """The job in local mode on the same files: the output every fault run must equal."""
        out = self.tmp / "reference"
        if out.exists():
            return out
        local = self.tmp / "local-disks"
        lines = []
        for name, files in sorted(self.corpus.items()):
            (local / name).mkdir(parents=True)
            for rel, data in files.items():
                (local / name / rel).write_bytes(data)
            lines.append(f"name={name} path={local / name}\n")
        (local / "ndb").write_text("".join(lines))
        d = self.job_dir(0.0)
        env = self.job_env()
        env.pop("GERYON_REGISTRY")
        env["GERYON_JOBS_DIR"] = str(self.tmp / "reference-jobs")
        proc = subprocess.run([*GERYON, "mapreduce", "-q", "--local", "--name", "wc", "-R", str(partitions),
                               "--out", str(out), "--ndb", str(local / "ndb"), str(d / "wc.py"),
                               str(d / "wc.py"), *sorted(self.corpus)],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return out


def workers_of(pid: int) -> list[int]:
    """Worker processes a node started (they run in their own sessions, children of the node)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def wait_job(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"job did not finish in {timeout}s:\n{err[-3000:]}") from None
    return proc.returncode, out, err


def word_counts(corpus: dict[str, dict[str, bytes]]) -> collections.Counter[str]:
    c: collections.Counter[str] = collections.Counter()
    for files in corpus.values():
        for data in files.values():
            c.update(data.decode().split())
    return c


def assert_same_output(out: Path, reference: Path, corpus: dict[str, dict[str, bytes]]) -> None:
    """Byte-identical part files, and every word counted exactly once (none lost, none twice)."""
    parts = sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "_")))
    assert parts == sorted(p.name for p in reference.iterdir() if not p.name.startswith((".", "_"))), parts
    assert (out / "_SUCCESS").is_file() and (reference / "_SUCCESS").is_file()
    for name in parts:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs from local mode"
    got: dict[str, int] = {}
    for name in parts:
        for line in (out / name).read_text().splitlines():
            key, value = line.split("\t")
            assert key not in got, f"{key} appears twice"
            got[key] = int(value)
    assert got == dict(word_counts(corpus))


def job_record(jobs_dir: Path) -> dict[str, Any]:
    """The newest job's record (what `geryon jobs JOB --json` prints)."""
    from geryon.mapreduce.jobstore import JobStore

    store = JobStore(str(jobs_dir))
    jobs = store.list()
    assert jobs, "no job recorded"
    return store.read(jobs[0]["id"])


def job_events(jobs_dir: Path) -> str:
    rec = job_record(jobs_dir)
    path = jobs_dir / rec["id"] / "events.log"
    return path.read_text() if path.exists() else ""


def job_logs(jobs_dir: Path) -> str:
    rec = job_record(jobs_dir)
    logs = jobs_dir / rec["id"] / "logs"
    return "".join(p.read_text(errors="replace") for p in sorted(logs.iterdir())) if logs.exists() else ""


def workers_running(node_pid: int, kind: str = "") -> list[int]:
    """Worker pids of a node, optionally only map (`m`) or reduce (`r`) attempts (from their argv)."""
    out = []
    for pid in workers_of(node_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"geryon.node.worker" in argv and (not kind or (len(argv) > 4 and argv[4].startswith(kind.encode()))):
            out.append(pid)
    return out


def kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def attempts(jobs_dir: Path) -> list[dict[str, Any]]:
    """Attempts recorded so far by the newest job (empty until it records one)."""
    try:
        rec = job_record(jobs_dir)
    except (AssertionError, OSError, ValueError, GeryonError):
        return []
    return list(rec.get("attempts", []))



def parts(out: Path) -> list[bytes]:
    """The part files of a job's output directory, in part order."""
    return [p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-")]


def input_lines(c: FaultCluster) -> list[str]:
    """Every line of the cluster's corpus, disk order then file order: a map-only job's output, in order."""
    return [ln for disk in sorted(c.corpus) for f in sorted(c.corpus[disk])
            for ln in c.corpus[disk][f].decode().splitlines()]


def mapreduce(c: FaultCluster, job_dir: Path, name: str, mode: str, *args: str, quiet: bool = True,
              timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`geryon mapreduce --name NAME ARGS <the corpus disks>` run in JOB_DIR, its output in c.tmp/NAME-MODE:
    on the cluster (mode "cluster"), or with --local on the copies of its disks (mode "local": call
    c.reference() first, it makes them)."""
    env = c.job_env()
    extra: list[str] = []
    if mode == "local":
        env.pop("GERYON_REGISTRY")
        extra = ["--local", "--ndb", str(c.tmp / "local-disks" / "ndb")]
    return subprocess.run([*GERYON, "mapreduce", *(["-q"] if quiet else []), "--name", name, *extra,
                           "--out", str(c.tmp / f"{name}-{mode}"), *args, *sorted(c.corpus)],
                          capture_output=True, text=True, env=env, cwd=job_dir, timeout=timeout)


def both_modes(c: FaultCluster, job_dir: Path, name: str, *args: str, stderr_has: str = "", quiet: bool = True,
               timeout: float = 180) -> tuple[list[bytes], list[bytes]]:
    """`geryon mapreduce ARGS` on the cluster and with --local on copies of its disks: both succeed (and
    say STDERR_HAS), and their parts are returned, cluster's first."""
    c.reference()   # the local copies of the disks and their ndb file
    runs = []
    for mode in ("cluster", "local"):
        proc = mapreduce(c, job_dir, name, mode, *args, quiet=quiet, timeout=timeout)
        assert proc.returncode == 0, proc.stderr
        assert stderr_has in proc.stderr, proc.stderr
        runs.append(parts(c.tmp / f"{name}-{mode}"))
    return runs[0], runs[1]
