"""Benchmark: a replica's first fill and its incremental sync after a 1 % change, 1 GB disk.

Starts a real registry and two node daemons on loopback (signed requests, as in
production): n1 serves the master chunk, n2 a chunk pool. The master holds FILES files of
SIZE bytes each (random bytes, 1 GiB by default) recorded in its checksum manifest. Then:
  - full: `replicate` makes the replica on n2 and fills it (every byte moves, node to node,
    each file checked by SHA-256 on arrival);
  - 1 %: CHANGED files (1 % of the bytes) are rewritten through the chunk service, as a
    user's writes would be, and `replicate` brings the replica up to date;
  - unchanged: `replicate` once more with nothing to do (the quick check alone).
Usage: python bench/replica_sync.py [--files 1024] [--size 1M] [--changed 10] [--dir DIR]
Prints one JSON object. Nothing here is imported by the package.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from geryon.disks.checksum import record_files
from geryon.disks.chunk import create_chunk, parse_size
from geryon.disks.remote import RemoteFS
from geryon.disks.replicate import replicate
from registry.auth import create_secret
from registry.client import RegistryClient

GERYON = [sys.executable, "-c", "from geryon.cli import main; main()"]


def start(argv: list[str], log: Path) -> tuple[subprocess.Popen[str], str]:
    """Start a server; return it and the URL it prints when listening."""
    proc = subprocess.Popen([*GERYON, *argv], stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)  # noqa: SIM115
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line}{log.read_text()}")
    return proc, line.split("listening on", 1)[1].split()[0]


def wait_for(pred, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the cluster")
        time.sleep(0.05)
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1024)
    ap.add_argument("--size", default="1M", help="bytes per file")
    ap.add_argument("--changed", type=int, default=10, help="files rewritten for the incremental sync")
    ap.add_argument("--dir", default=None, help="where the chunks go (default: a temporary directory)")
    args = ap.parse_args()
    size = parse_size(args.size)
    tmp = Path(tempfile.mkdtemp(prefix="geryon-bench-replica-", dir=args.dir))
    procs: list[subprocess.Popen[str]] = []
    try:
        secret = create_secret(tmp / "secret")
        ndb = tmp / "ndb"
        ndb.write_text("name=d0.bench kfs master=n1!c0\n")
        master = tmp / "n1-c0"
        create_chunk(str(master), args.files * size + (64 << 20))
        t = time.monotonic()
        names = []
        for i in range(args.files):
            name = f"part/{i // 100:02d}/f{i:05d}.bin"
            (master / name).parent.mkdir(parents=True, exist_ok=True)
            (master / name).write_bytes(os.urandom(size))
            names.append(name)
        record_files(str(master), names)
        made_s = time.monotonic() - t

        reg_proc, reg_url = start(["registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns", "--secret-file",
                                   str(tmp / "secret"), "--ndb", str(ndb)], tmp / "registry.log")
        procs.append(reg_proc)
        common = ["--listen", "127.0.0.1:0", "--secret-file", str(tmp / "secret"), "--registry", reg_url,
                  "--refresh", "0.5", "--work-dir"]
        n1, n1_url = start(["node", "--name", "n1", "--disk", f"c0={master}", *common, str(tmp / "w1")],
                           tmp / "n1.log")
        procs.append(n1)
        n2, _ = start(["node", "--name", "n2", "--chunk-pool", str(tmp / "pool2"), *common, str(tmp / "w2")],
                      tmp / "n2.log")
        procs.append(n2)
        results: dict[str, object] = {"files": args.files, "file_bytes": size, "disk_bytes": args.files * size,
                                      "make_and_record_s": round(made_s, 2)}
        with RegistryClient(reg_url, secret=secret, owner="bench") as reg:
            wait_for(lambda: reg.find({"svc": "rstyx", "host": "n2", "pool": "*"}))
            wait_for(lambda: reg.find({"resource": "kfs", "name": "n1", "id": "c0"}))

            def sync(label: str) -> None:
                t = time.monotonic()
                report = replicate("d0.bench", "n2", registry=reg, secret=secret, ndb_file=str(ndb))
                wall = time.monotonic() - t
                s = report.sync
                results[label] = {"wall_s": round(wall, 3), "files_copied": s.copied,
                                  "bytes_moved": s.bytes_moved, "files_removed": s.removed, "files_unchanged": s.kept,
                                  "MB_per_s": round(s.bytes_moved / 1e6 / wall, 1) if s.bytes_moved else None}

            sync("full")
            step = max(1, args.files // args.changed)
            with RemoteFS(n1_url, "c0", secret) as remote:
                for i in range(0, step * args.changed, step):
                    remote.writebytes(names[i], os.urandom(size))
            results["changed_bytes"] = args.changed * size
            results["changed_fraction"] = round(args.changed / args.files, 4)
            sync("incremental_1pct")
            sync("unchanged")
        print(json.dumps(results, indent=1))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
