"""Benchmark: what the security work costs: rcpu round trip, registry `find` req/s, shuffle MB/s.

Runs the same measurements on two checkouts of Geryon in one run, interleaved A B A B so
that the load of a shared machine falls on both alike, and prints medians and ratios:

  - rcpu: median wall time of `Rcpu.run("echo hi")` (registry + one node, signed);
  - find: registry `find` requests/s from one `RegistryClient` loop, and from C threads
    each with its own client (1,000 services registered);
  - shuffle: MB/s of the reduce side's segment fetch (`geryon.node.worker.http_range`: signed
    GET with Range) of a 256 MiB map output planted in the node's output disk, in 32 MiB
    segments.

Usage (the "before" checkout: a git worktree at the commit before issue 11's work):
    git worktree add --detach ../geryon-before 81e29fb
    python bench/security.py --before ../geryon-before [--after .] [--reps 5]
Each measurement runs in a child process with PYTHONPATH set to one checkout, so the
servers it starts and the client it drives are that checkout's code. Prints one JSON
object at the end. Nothing here is imported by the package.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SHUFFLE_FILE = 256 << 20
SHUFFLE_SEGMENT = 32 << 20
JOB = "benchjob"


# -- the child: measures one checkout (whatever `geryon` and `registry` import as) ---------

def _from(name: str, *modules: str) -> Any:
    """`name` from the first of `modules` this checkout has (the "before" checkout predates the
    layout of 3109ee0: `geryon.rcpuclient`, `geryon.chunk`, `geryon.segments`, `geryon.worker`)."""
    import importlib

    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError:
            continue
    raise SystemExit(f"none of {modules} in this checkout")


def _start(argv: list[str], err: Path) -> tuple[subprocess.Popen[str], str]:
    with open(err, "w") as errf:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if "listening on" not in line:
        p.kill()
        raise SystemExit(f"{argv[2:5]} did not start: {line}{err.read_text()[-2000:]}")
    return p, line.split("listening on", 1)[1].split()[0]


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system, reaped children included) of these processes and of this one."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15])       # utime stime cutime cstime
    own = os.times()
    return total / tick + own.user + own.system


def _rcpu_with(rcpu: Any, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        out, err = io.BytesIO(), io.BytesIO()
        t0 = time.perf_counter()
        result = rcpu.run("echo hi", stdout=out, stderr=err)
        times.append(time.perf_counter() - t0)
        assert out.getvalue() == b"hi\n" and result.cpudisk == "d0.cpu", (result, out.getvalue(), err.getvalue())
    return times


def _rcpu(reg: Any, secret: bytes, runs: int) -> float:
    Rcpu = _from("Rcpu", "geryon.cluster.rcpu", "geryon.rcpuclient")

    with Rcpu(reg, secret) as rcpu:
        return statistics.median(_rcpu_with(rcpu, runs + 2)[2:])   # the first two warm caches


def _finds(url: str, secret: bytes, seconds: float, threads: int) -> float:
    from registry.client import RegistryClient

    clients = [RegistryClient(url, secret=secret, owner=f"bench{k}") for k in range(threads)]
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def loop(k: int) -> None:
        while time.monotonic() < deadline:
            found = clients[k].find({"svc": "bench", "n": str(k * 7 % 1000)})
            assert len(found) == 1, found
            counts[k] += 1

    try:
        for c in clients:
            c.find({"svc": "bench", "n": "0"})   # connected and warm
        deadline = time.monotonic() + seconds
        workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        for c in clients:
            c.close()
    return sum(counts) / seconds


def _shuffle(node_url: str, chunk: Path, secret: bytes, reps: int, plant: bool = True) -> float:
    from geryon.node.jobservice import staging_name
    Segment = _from("Segment", "geryon.mapreduce.segments", "geryon.segments")
    http_range = _from("http_range", "geryon.node.worker", "geryon.worker")

    out = chunk / staging_name(JOB)
    if plant:
        out.mkdir(exist_ok=True)
        block = os.urandom(1 << 20)
        with open(out / "m0.out", "wb") as f:
            for _ in range(SHUFFLE_FILE // len(block)):
                f.write(block)
    location = f"{node_url}/v1/jobs/{JOB}/data/m0.out"
    rates = []
    for _ in range(reps + 1 if plant else reps):
        t0 = time.perf_counter()
        got = 0
        for offset in range(0, SHUFFLE_FILE, SHUFFLE_SEGMENT):
            for data in http_range(location, Segment(offset, SHUFFLE_SEGMENT, 1, "str"), secret):
                got += len(data)
        rates.append(got / (time.perf_counter() - t0) / 1e6)
        assert got == SHUFFLE_FILE
    return statistics.median(rates[1:] if plant else rates)


@contextlib.contextmanager
def _cluster() -> Iterator[tuple[Any, str, str, Path, list[int], bytes]]:
    """A registry and one node of this checkout, 1,000 services registered:
    (registry client, registry URL, node URL, the node's chunk c0, server pids, secret)."""
    create_chunk = _from("create_chunk", "geryon.disks.chunk", "geryon.chunk")
    from registry.auth import create_secret
    from registry.client import RegistryClient

    tmp = Path(tempfile.mkdtemp(prefix="geryon-bench-sec-"))
    secret = create_secret(tmp / "secret")
    py = [sys.executable, "-c"]
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    procs = []
    try:
        # The node has an output disk (d0.cpu), as a cluster's nodes do: rcpu's $cpudisk.
        (tmp / "ndb").write_text("name=d0.cpu kfs master=n0!out\n")
        reg_p, reg_url = _start([*py, "from geryon.cli import main; main()", "registry", "serve", "--listen",
                                 "127.0.0.1:0", "--no-mdns", "--secret-file", str(tmp / "secret"),
                                 "--ndb", str(tmp / "ndb")], tmp / "reg.err")
        procs.append(reg_p)
        chunk = tmp / "c0"
        create_chunk(str(chunk), 1 << 30)
        create_chunk(str(tmp / "out"), 1 << 30)
        node_p, node_url = _start([*py, "from geryon.cli.node import node; node()", "--name", "n0", "--listen",
                                   "127.0.0.1:0", "--secret-file", str(tmp / "secret"), "--disk", f"c0={chunk}",
                                   "--disk", f"out={tmp / 'out'}", "--work-dir", str(tmp / "work"),
                                   "--registry", reg_url], tmp / "node.err")
        procs.append(node_p)
        with RegistryClient(reg_url, secret=secret, owner="bench-reg") as reg:
            deadline = time.monotonic() + 30
            while not (reg.find({"svc": "rstyx", "host": "n0"}) and
                       any(x.get("addr") for x in reg.find({"chunk": "*"}))):
                if time.monotonic() > deadline:
                    raise SystemExit("the node never registered its cpu")
                time.sleep(0.1)
            for n in range(1000):
                reg.register(f"bench-{n}", [("svc", "bench"), ("n", str(n))])
            yield reg, reg_url, node_url, chunk, [reg_p.pid, node_p.pid], secret
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement once, on a cluster of this checkout (one child of the A B A B mode)."""
    with _cluster() as (reg, reg_url, node_url, chunk, pids, secret):
        result: dict[str, float] = {"load_avg_1m": os.getloadavg()[0]}
        only = set(args.only.split(","))
        if "rcpu" in only:
            c0 = _cpu_seconds(pids)
            result["rcpu_s"] = _rcpu(reg, secret, args.rcpu_runs)
            result["rcpu_cpu_ms"] = (_cpu_seconds(pids) - c0) * 1e3 / (args.rcpu_runs + 2)
        if "find" in only:
            for threads in (1, args.threads):
                c0 = _cpu_seconds(pids)
                rate = result[f"find_{threads}_per_s"] = _finds(reg_url, secret, args.seconds, threads)
                result[f"find_{threads}_cpu_us"] = (_cpu_seconds(pids) - c0) * 1e6 / (rate * args.seconds)
        if "shuffle" in only:
            c0 = _cpu_seconds(pids)
            result["shuffle_mb_s"] = _shuffle(node_url, chunk, secret, args.shuffle_reps)
            result["shuffle_cpu_ms_per_mb"] = ((_cpu_seconds(pids) - c0) * 1e3 /
                                               ((args.shuffle_reps + 1) * SHUFFLE_FILE / 1e6))
        return result


def serve(args: argparse.Namespace) -> None:
    """Lockstep mode's child: set up, say `ready`, then run each operation the parent names
    on stdin (`rcpu N`, `find N`, `findc SECONDS`, `shuffle N`) and answer one JSON line."""
    Rcpu = _from("Rcpu", "geryon.cluster.rcpu", "geryon.rcpuclient")

    with _cluster() as (reg, reg_url, node_url, chunk, pids, secret), Rcpu(reg, secret) as rcpu:
        _rcpu_with(rcpu, 2)
        _shuffle(node_url, chunk, secret, 1)
        print("ready", flush=True)
        for line in sys.stdin:
            op, _, arg = line.strip().partition(" ")
            c0 = _cpu_seconds(pids)
            t0 = time.perf_counter()
            if op == "rcpu":
                value = statistics.median(_rcpu_with(rcpu, int(arg)))
            elif op == "find":
                times = []
                for k in range(int(arg)):
                    t = time.perf_counter()
                    assert len(reg.find({"svc": "bench", "n": str(k % 1000)})) == 1
                    times.append(time.perf_counter() - t)
                value = statistics.median(times)
            elif op == "findc":
                value = _finds(reg_url, secret, float(arg), args.threads)
            elif op == "shuffle":
                value = _shuffle(node_url, chunk, secret, int(arg), plant=False)
            else:
                break
            print(json.dumps({"value": value, "cpu": _cpu_seconds(pids) - c0,
                              "wall": time.perf_counter() - t0}), flush=True)


# -- the parent: A B A B over two checkouts ---------------------------------------------

def run_child(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env["PYTHONPATH"] = str(tree)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--seconds", str(args.seconds),
            "--threads", str(args.threads), "--rcpu-runs", str(args.rcpu_runs), "--shuffle-reps", str(args.shuffle_reps),
            "--only", args.only]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOCKSTEP_OPS = (("rcpu", "3", "rcpu_s"), ("find", "20", "find_s"), ("findc", "0.5", "find_concurrent_per_s"),
                ("shuffle", "1", "shuffle_mb_s"))
"""Lockstep operations: (op, argument, figure); each round runs every one on A and on B in turn.
CPU per op: per rcpu run, per find, per MB fetched (registry + node + client process)."""


def lockstep(trees: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    """Both checkouts' clusters up at once; each round runs every operation on one, then the
    other (the order alternating), so load drifts fall on both alike; paired ratios per round."""
    children = {}
    for name, tree in trees.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        env["PYTHONPATH"] = str(tree)
        children[name] = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", "--threads", str(args.threads)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    try:
        for name, child in children.items():
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit(f"the {name} cluster did not start")
        got: dict[str, dict[str, list[dict[str, float]]]] = {n: {f: [] for *_, f in LOCKSTEP_OPS} for n in trees}
        loads = []
        for rnd in range(args.lockstep):
            loads.append(os.getloadavg()[0])
            for op, arg, figure in LOCKSTEP_OPS:
                for name in (("before", "after") if rnd % 2 == 0 else ("after", "before")):
                    child = children[name]
                    assert child.stdin is not None and child.stdout is not None
                    child.stdin.write(f"{op} {arg}\n")
                    child.stdin.flush()
                    got[name][figure].append(json.loads(child.stdout.readline()))
            print(f"round {rnd}: " + " ".join(f"{f} {got['before'][f][-1]['value']:.4g}/{got['after'][f][-1]['value']:.4g}"
                                               for *_, f in LOCKSTEP_OPS), file=sys.stderr, flush=True)
        out: dict[str, Any] = {"rounds": args.lockstep, "load_avg_1m": statistics.median(loads), "figures": {},
                               "raw": got}
        for op, arg, figure in LOCKSTEP_OPS:
            b, a = got["before"][figure], got["after"][figure]
            def per(x: dict[str, float], op: str = op, arg: str = arg) -> float:    # CPU s per rcpu/find/MB
                if op in ("rcpu", "find"):
                    return float(arg)
                return x["value"] * float(arg) if op == "findc" else SHUFFLE_FILE / 1e6
            out["figures"][figure] = {
                "before": statistics.median(x["value"] for x in b), "after": statistics.median(x["value"] for x in a),
                "paired_ratio_after_over_before": statistics.median(y["value"] / x["value"] for x, y in zip(b, a)),
                "cpu_s_per_op_before": statistics.median(x["cpu"] / per(x) for x in b),
                "cpu_s_per_op_after": statistics.median(x["cpu"] / per(x) for x in a),
                # one round's CPU is a few clock ticks (10 ms): the sum over rounds is the finer figure
                "cpu_s_per_op_total_before": sum(x["cpu"] for x in b) / sum(per(x) for x in b),
                "cpu_s_per_op_total_after": sum(x["cpu"] for x in a) / sum(per(x) for x in a)}
        return out
    finally:
        for child in children.values():
            if child.stdin:
                child.stdin.close()
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, help="checkout of the code before the security work")
    ap.add_argument("--after", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--reps", type=int, default=5, help="A B rounds")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per find measurement")
    ap.add_argument("--threads", type=int, default=4, help="concurrent find clients")
    ap.add_argument("--rcpu-runs", type=int, default=30)
    ap.add_argument("--shuffle-reps", type=int, default=3)
    ap.add_argument("--only", default="rcpu,find,shuffle", help="measurements to make (comma-separated)")
    ap.add_argument("--lockstep", type=int, default=0, metavar="ROUNDS",
                    help="instead of A B A B processes: both clusters up at once, operations interleaved")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    if args.serve:
        serve(args)
        return
    if args.before is None:
        ap.error("--before CHECKOUT is required")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    if args.lockstep:
        result = lockstep(trees, args)
        for figure, f in result["figures"].items():
            print(f"{figure:>22}: before {f['before']:10.4g}  after {f['after']:10.4g}  paired after/before "
                  f"{f['paired_ratio_after_over_before']:.3f}  cpu/op {f['cpu_s_per_op_before']:.4g} -> "
                  f"{f['cpu_s_per_op_after']:.4g} s (over all rounds {f['cpu_s_per_op_total_before']:.4g} -> "
                  f"{f['cpu_s_per_op_total_after']:.4g} s)", file=sys.stderr)
        print(json.dumps(result))
        return
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for rep in range(args.reps):
        for name in (("before", "after") if rep % 2 == 0 else ("after", "before")):
            runs[name].append(run_child(trees[name], args))
            print(f"rep {rep} {name}: {json.dumps(runs[name][-1])}", file=sys.stderr, flush=True)
    keys = list(runs["before"][0])
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    ratio = {k: medians["after"][k] / medians["before"][k] for k in keys}
    for k in keys:
        print(f"{k:>16}: before {medians['before'][k]:10.4g}  after {medians['after'][k]:10.4g}  "
              f"after/before {ratio[k]:.3f}", file=sys.stderr)
    print(json.dumps({"reps": args.reps, "trees": {k: str(v) for k, v in trees.items()},
                      "medians": medians, "ratio_after_over_before": ratio, "runs": runs}))


if __name__ == "__main__":
    main()
