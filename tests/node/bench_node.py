"""Throughput figures for the node note: `python tests/node/bench_node.py`.

Starts a registry and two node daemons on loopback (subprocesses), then measures: reading a
200 MB file through RemoteFS (download, and openbin/read in 1 MiB blocks), reading 10,000
small files through RemoteFS, and rcpu round trips (in process, and the CLI).
"""
from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from geryon.disks.chunk import create_chunk  # noqa: E402
from geryon.cluster.rcpu import Rcpu  # noqa: E402
from geryon.disks.remote import RemoteFS  # noqa: E402
from node_helpers import Cluster, wait_until  # noqa: E402
from registry.auth import create_secret, load_secret  # noqa: E402


class Null(io.RawIOBase):
    def __init__(self) -> None:
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self.n += len(b)
        return len(b)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="geryon-bench-"))
    create_secret(tmp / "secret")
    secret = load_secret(tmp / "secret")
    cluster = Cluster(tmp, tmp / "secret")
    try:
        cluster.name_disks("name=d1.cpu kfs master=n1!out\nname=d2.cpu kfs master=n2!out\n")
        cluster.start_registry()
        for name in ("big", "small"):
            create_chunk(str(tmp / f"n1-{name}"), 1 << 30)
        n1 = cluster.start_node("n1", ["big", "small", "out"])
        cluster.start_node("n2", ["out"])
        big = n1.chunks["big"] / "big.bin"
        with open(big, "wb") as f:
            for _ in range(200):
                f.write(os.urandom(1 << 20))
        small = n1.chunks["small"]
        for i in range(100):
            d = small / f"d{i:02d}"
            d.mkdir()
            for j in range(100):
                (d / f"f{j:03d}").write_bytes(os.urandom(1024))
        with RemoteFS(n1.url, "big", secret) as remote:
            for label, read in (("download", lambda: remote.download("big.bin", Null())),
                                ("openbin+read(1MiB)", lambda: _blocks(remote))):
                best = min(_timed(read) for _ in range(3))
                print(f"200 MB file, {label}: {200 / best:.0f} MB/s ({best:.2f} s)")
        with RemoteFS(n1.url, "small", secret) as remote:
            def read_all() -> None:
                for i in range(100):
                    for j in range(100):
                        remote.readbytes(f"d{i:02d}/f{j:03d}")
            t = _timed(read_all)
            print(f"10,000 x 1 KiB files, readbytes each: {10000 / t:.0f} files/s, "
                  f"{10 / t:.2f} MB/s ({t:.2f} s)")
            t = _timed(lambda: [remote.readbytes(p) for p in remote.walk.files()])
            print(f"10,000 x 1 KiB files, walk.files + readbytes: {10000 / t:.0f} files/s ({t:.2f} s)")
        with cluster.client() as reg:
            wait_until(lambda: len(reg.find({"svc": "rstyx"})) == 2, 10)
            with Rcpu(reg, secret) as runner:
                times = []
                for _ in range(50):
                    t0 = time.perf_counter()
                    runner.run("true", stdout=io.BytesIO(), stderr=io.BytesIO())
                    times.append(time.perf_counter() - t0)
            print(f"rcpu round trip (in process, `true`, 50 runs): median {statistics.median(times) * 1000:.1f} ms, "
                  f"p90 {sorted(times)[44] * 1000:.1f} ms")
        env = {**os.environ, "GERYON_REGISTRY": cluster.registry_url, "GERYON_SECRET_FILE": str(tmp / "secret"),
               "XDG_STATE_HOME": str(tmp / "state")}
        from node_helpers import VERB_CLI
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([*VERB_CLI, "rcpu", "true"], env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        print(f"`geryon rcpu true` (new process each, 5 runs): median {statistics.median(times) * 1000:.0f} ms")
    finally:
        cluster.stop()


def _blocks(remote: RemoteFS) -> None:
    with remote.openbin("big.bin") as f:
        while f.read(1 << 20):
            pass


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
