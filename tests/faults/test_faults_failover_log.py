"""A node killed mid-job: each replica switch is said once, later maps do not try the dead copy
first, and what was recomputed is counted once.

d0.t's master is on n0, its replica on n1. n0 is killed as soon as it runs a map; the maps of
d0.t that start after the driver has learnt it (n0's attempts are lost, or a map reports the
copy unreadable) read the replica first, so only maps already running can say
`reading replica`, and each says it once (a log record beside the stderr line used to print
it twice). n0's finished maps run again: the summary's records and counters still count each
input record once. The printed part URLs are then the next job's input.
"""
from __future__ import annotations

import collections
import re
import subprocess
from pathlib import Path

from tests.faults.fault_helpers import (GERYON, FaultCluster, assert_same_output, job_record, kill, wait_job,
                                        workers_running, write_corpus)
from tests.node.node_helpers import wait_until

SWITCH = re.compile(r"^(?:geryon: )?(m\d+\.a\d+): .*d0\.t: .*reading replica", re.M)
COUNTING = '''import time
from collections import Counter

import geryon


def map(key, value):
    time.sleep(0.3)
    geryon.increment_counter("test", "records", 1)
    return Counter(value.split())


def reduce(key, values):
    return sum(values)


combine = reduce
'''
LINES = "def map(key, value):\n    yield 'lines', 1\n\n\ndef reduce(key, values):\n    return sum(values)\n"


def test_dead_master_switch_said_once_remembered_and_counted_once(tmp_path: Path, secret_file: Path) -> None:
    corpus = write_corpus(Path("."), disks=2, files=12, lines=20)
    records = sum(len(files) for files in corpus.values())
    c = FaultCluster(tmp_path, secret_file, corpus)
    try:
        c.start(nodes=3, cpus=1)
        slots = 3 * 1
        (tmp_path / "count.py").write_text(COUNTING)
        (tmp_path / "lines.py").write_text(LINES)
        out = tmp_path / "out"
        job = subprocess.Popen([*GERYON, "mapreduce", "--name", "wc", "-R", "3", "--out", str(out), "--lease", "2",
                                "--split-size", "1", "count.py", "count.py", *sorted(corpus)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=c.job_env(), cwd=tmp_path)
        wait_until(lambda: workers_running(c.nodes["n0"].proc.popen.pid, "m"), 60)
        c.nodes["n0"].proc.expected_exit = True
        kill(c.node_pids("n0"))                                # the daemon and its workers
        code, _, err = wait_job(job)
        assert code == 0, err
        assert_same_output(out, c.reference(), c.corpus)
        switches = collections.Counter(SWITCH.findall(err))
        assert switches, err                                   # the kill did land on d0.t's reads
        assert max(switches.values()) == 1, switches           # each attempt says it once
        assert sum(switches.values()) <= slots, switches       # only maps running when n0 died
        assert f"{records:,} records in" in err and f"counter test/records: {records:,}" in err, err
        # the part URLs (on n1, n2: n0 is dead; printed without --out) are the next job's input
        urls = job_record(c.jobs_dir)["summary"]["urls"]
        lines = sum(p.read_bytes().count(b"\n") for p in out.glob("part-*"))
        assert len(urls) == 3 and all(u.startswith("geryon://") for u in urls), urls
        again = subprocess.run([*GERYON, "mapreduce", "-q", "--reader", "lines", "-R", "1", "--out",
                                str(tmp_path / "again"), "lines.py", "lines.py", *urls],
                               capture_output=True, text=True, env=c.job_env(), cwd=tmp_path, timeout=120)
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "again" / "part-00000").read_text() == f"lines\t{lines}\n"
    finally:
        c.stop()
