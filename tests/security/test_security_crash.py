"""Crash leftovers (issue 11 item 9), played with kill -9 against real processes.

A local `geryon load` killed while it packs, a `geryon load --cluster` killed while it
uploads into claimed pool chunks, and a registry killed five times while clients register
persist entries: each rerun or restart leaves no staging directory, no orphan chunk, no
temporary state file, and loses nothing that was acknowledged.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from geryon.disks.chunk import CLAIM_NAME
from geryon.disks.diskdb import read_disks
from geryon.ingest.load import STAGING_PREFIX
from geryon.disks.remote import RemoteFS
from registry.auth import load_secret
from registry.client import RegistryClient
from registry.state import load_state
from tests.node.node_helpers import GERYON, Cluster, Proc, wait_until


def _corpus(root: Path, files: int, size: int) -> dict[str, str]:
    """A directory of `files` distinct files of `size` bytes; {relative path: sha256}."""
    out = {}
    block = os.urandom(size)
    for i in range(files):
        rel = f"f{i // 100:02d}/g{i:05d}.bin"
        data = i.to_bytes(8, "big") + block[8:]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        out["/" + rel] = hashlib.sha256(data).hexdigest()
    return out


def _staged_files(parent: Path) -> bool:
    """Whether a load's staging directory under `parent` holds a file yet."""
    try:
        for d in parent.iterdir():
            if d.name.startswith(STAGING_PREFIX) and d.is_dir() and any(p.is_file() for p in d.rglob("*")):
                return True
    except OSError:
        pass
    return False


def _staging(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(STAGING_PREFIX))


def _start(argv: list[str], env: dict[str, str], err: Path) -> subprocess.Popen[bytes]:
    with open(err, "w") as errf:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errf)


def _kill_when(p: subprocess.Popen[bytes], ready: object, err: Path) -> None:
    """kill -9 `p` once `ready()` holds; fail if it ended first."""
    def _cond() -> bool:
        assert p.poll() is None, f"the load ended (exit {p.returncode}) before it could be killed: " \
                                 f"{err.read_text()[-2000:]}"
        return bool(ready())  # type: ignore[operator]
    try:
        wait_until(_cond, 120, interval=0.005)
    finally:
        p.kill()
        p.wait(30)


def _local_data(disks: dict[str, Path]) -> Iterator[tuple[str, str]]:
    for disk in disks.values():
        for p in sorted(disk.rglob("*")):
            if p.is_file() and not p.name.startswith(".geryon"):
                yield "/" + p.relative_to(disk).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()


def test_a_killed_local_load_then_a_rerun_leaves_no_staging_and_the_data_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    want = _corpus(src, 2000, 32 << 10)
    to, ndb = tmp_path / "disks", tmp_path / "ndb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    argv = [*GERYON, "load", str(src), "--app", "crash", "--to", str(to), "--ndb", str(ndb), "--chunk", "2M", "-q"]
    p = _start(argv, env, tmp_path / "load1.err")
    _kill_when(p, lambda: _staged_files(to), tmp_path / "load1.err")
    assert _staging(to), "kill -9 left no staging directory: the test did not play the crash"

    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _staging(to) == []
    named = {d.name: Path(d.path) for d in read_disks(str(ndb)) if d.path}
    assert set(named) == set(again.stdout.split())
    on_disk = {p.name for p in to.iterdir() if re.fullmatch(r"d\d+\.crash", p.name)}
    assert on_disk == set(named)
    got = list(_local_data(named))
    assert len(got) == len(want) and dict(got) == want


def _pool_chunks(cluster: Cluster, host: str) -> set[str]:
    pool = cluster.tmp / f"pool-{host}"
    return {p.name for p in pool.iterdir() if p.is_dir()} if pool.exists() else set()


def _registered(cluster: Cluster, host: str) -> set[str]:
    with cluster.client() as reg:
        return {str(s.get("id")) for s in reg.find({"resource": "kfs", "name": host})}


def _pool_has_data(cluster: Cluster, hosts: tuple[str, ...]) -> bool:
    for host in hosts:
        for chunk in _pool_chunks(cluster, host):
            root = cluster.tmp / f"pool-{host}" / chunk
            if any(p.is_file() and not p.name.startswith(".geryon") for p in root.rglob("*")):
                return True
    return False


def test_a_killed_cluster_load_leaves_no_orphan_chunk_once_its_claims_run_out(tmp_path: Path,
                                                                               secret_file: Path) -> None:
    cluster = Cluster(tmp_path, secret_file)
    hosts = ("n1", "n2")
    try:
        cluster.start_registry()
        for n in hosts:
            cluster.start_node(n, (), extra=["--chunk-pool", str(tmp_path / f"pool-{n}"), "--pool-size", "256M",
                                             "--claim-lease", "5"])
        with cluster.client() as reg:
            wait_until(lambda: all(reg.find({"svc": "rstyx", "host": n, "pool": "*"}) for n in hosts), 30)
        src = tmp_path / "src"
        want = _corpus(src, 1000, 4 << 10)
        staging = tmp_path / "tmp"
        staging.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        env.update({"GERYON_REGISTRY": cluster.registry_url, "GERYON_SECRET_FILE": str(secret_file),
                    "GERYON_NDB": str(cluster.ndb), "XDG_CONFIG_HOME": str(tmp_path / "config"),
                    "TMPDIR": str(staging)})
        argv = [*GERYON, "load", str(src), "--app", "crash", "--cluster", "--chunk", "256K", "-q"]
        p = _start(argv, env, tmp_path / "load1.err")
        _kill_when(p, lambda: _pool_has_data(cluster, hosts), tmp_path / "load1.err")
        assert _staging(staging), "kill -9 left no staging directory: the test did not play the crash"
        assert any(_pool_chunks(cluster, n) for n in hosts)
        assert read_disks(str(cluster.ndb)) == []

        # The claims run out unrenewed: each node deletes its half-filled pool chunks and says so.
        wait_until(lambda: not any(_pool_chunks(cluster, n) for n in hosts), 60, interval=0.1)
        wait_until(lambda: not any(_registered(cluster, n) for n in hosts), 30, interval=0.1)

        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert _staging(staging) == []
        disks = read_disks(str(cluster.ndb))
        assert {d.name for d in disks} == set(again.stdout.split())
        for n in hosts:
            named = {d.chunk for d in disks if d.host == n}
            assert _pool_chunks(cluster, n) == named
            wait_until(lambda n=n, named=named: _registered(cluster, n) == named, 30, interval=0.1)  # type: ignore[misc]
        secret = load_secret(secret_file)
        got: list[tuple[str, str]] = []
        for d in disks:
            fs = RemoteFS(cluster.nodes[d.host].url, str(d.chunk), secret)
            try:
                for path, _size in fs.files():
                    got.append((path, hashlib.sha256(fs.readbytes(path)).hexdigest()))
            finally:
                fs.close()
        assert len(got) == len(want) and dict(got) == want
    finally:
        cluster.stop()


def _kill_while_saving(reg: Proc, state: Path) -> None:
    """kill -9 the registry, if we can as soon as it has a temporary state file open (it saves often)."""
    def saving() -> bool:
        return any(n.startswith(f".{state.name}.") and not n.endswith(".lock") for n in os.listdir(state.parent))
    try:
        wait_until(saving, 3, interval=0.0005)
    except AssertionError:
        pass                                      # not caught in the act: killed anyway
    reg.stop(signal.SIGKILL)


_REGISTERER = """
import sys
from pathlib import Path
from registry.auth import load_secret
from registry.client import RegistryClient
url, secret_file, tag = sys.argv[1:]
c = RegistryClient(url, secret=load_secret(Path(secret_file)), owner="crash-" + tag)
i = 0
while True:
    name = f"p-{tag}-{i}"
    c.register(name, [("persist", "1"), ("n", str(i))])
    print(name, flush=True)
    i += 1
"""


def test_a_registry_killed_five_times_under_persist_registrations_keeps_every_ack(tmp_path: Path,
                                                                                    secret_file: Path) -> None:
    state = tmp_path / "state" / "regstate.json"
    acked: set[str] = set()
    procs: list[Proc] = []
    left_by_kill = 0
    try:
        for round_ in range(6):
            if state.parent.exists():
                left_by_kill += sum(1 for p in state.parent.iterdir() if p.name.startswith(".regstate.json.")
                                    and p.name != ".regstate.json.lock")
            reg = Proc([*GERYON, "registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns", "--secret-file",
                        str(secret_file), "--state", str(state)], tmp_path / f"registry.{round_}.err",
                       env={"XDG_CONFIG_HOME": str(tmp_path / "config")})
            procs.append(reg)
            line = reg.readline(60)
            assert "listening on" in line, line + reg.stderr()
            url = line.split("listening on", 1)[1].split()[0]
            # The start swept what the kill left: only the state file and the lock.
            leftovers = {p.name for p in state.parent.iterdir()} - {"regstate.json", ".regstate.json.lock"}
            assert not leftovers, leftovers
            saved = {s.name for s, _owner in load_state(state)}
            assert acked <= saved, f"lost acknowledged entries: {sorted(acked - saved)[:5]}"
            if round_ == 5:
                break
            clients = [Proc([sys.executable, "-c", _REGISTERER, url, str(secret_file), f"{round_}{k}"],
                            tmp_path / f"client.{round_}.{k}.err") for k in range(3)]
            procs += clients
            for c in clients:                      # each has some acknowledged, then the kill lands
                for _ in range(5):
                    name = c.readline(60).strip()
                    assert name, c.stderr()[-2000:]
                    acked.add(name)
            _kill_while_saving(reg, state)
            for c in clients:                      # every name printed was acknowledged
                c.popen.kill()
                c.popen.wait(30)
                assert c.popen.stdout is not None
                acked.update(n.strip() for n in c.popen.stdout.read().splitlines() if n.strip())
                c.stop()
        with RegistryClient(url, secret=load_secret(secret_file), owner="check") as client:
            served = {s.name for s in client.find({"persist": "1"})}
        assert acked <= served
        assert len(acked) >= 3 * 5 * 5
        print(f"\n5 registry kills: {len(acked)} acknowledged persist entries kept, "
              f"{left_by_kill} temporary state files left by the kills and swept")
    finally:
        for p in procs:
            p.stop(signal.SIGKILL)


def test_a_cluster_load_killed_between_naming_and_dropping_its_claims_leaks_nothing(
        tmp_path: Path, secret_file: Path) -> None:
    """The load names its disks, then drops its claims: killed -9 in between (the instant found
    with a test pause, the kill a real SIGKILL), its claims run out on chunks the registry
    names, and each node keeps them (and drops the claim): no chunk leaked, none lost."""
    cluster = Cluster(tmp_path, secret_file)
    try:
        cluster.start_registry()
        node = cluster.start_node("n1", (), extra=["--chunk-pool", str(tmp_path / "pool-n1"), "--pool-size", "64M",
                                                    "--claim-lease", "2"])
        with cluster.client() as reg:
            wait_until(lambda: reg.find({"svc": "rstyx", "host": "n1", "pool": "*"}), 30)
        src = tmp_path / "src"
        want = _corpus(src, 100, 4 << 10)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        env.update({"GERYON_REGISTRY": cluster.registry_url, "GERYON_SECRET_FILE": str(secret_file),
                    "GERYON_NDB": str(cluster.ndb), "XDG_CONFIG_HOME": str(tmp_path / "config"),
                    "GERYON_TEST_PAUSE_NAMED": "120"})
        err = tmp_path / "load.err"
        p = _start([*GERYON, "load", str(src), "--app", "named", "--cluster", "--chunk", "128K", "-q"], env, err)
        _kill_when(p, lambda: "geryon: named" in err.read_text(), err)
        disks = read_disks(str(cluster.ndb))
        chunks = {str(d.chunk) for d in disks}
        assert disks and chunks == _pool_chunks(cluster, "n1")
        claims = lambda: [c for c in chunks if (tmp_path / "pool-n1" / c / CLAIM_NAME).exists()]  # noqa: E731
        assert claims(), "the kill came after the claims were dropped: the test did not play the window"
        # The claims run out unrenewed; the node sees the chunks named and keeps them.
        wait_until(lambda: not claims(), 60, interval=0.1)
        assert _pool_chunks(cluster, "n1") == chunks
        wait_until(lambda: _registered(cluster, "n1") == chunks, 30, interval=0.1)
        secret = load_secret(secret_file)
        got: dict[str, str] = {}
        for d in disks:
            fs = RemoteFS(node.url, str(d.chunk), secret)
            try:
                for path, _size in fs.files():
                    got[path] = hashlib.sha256(fs.readbytes(path)).hexdigest()
            finally:
                fs.close()
        assert got == want
    finally:
        cluster.stop()
