"""A node killed mid-job: each replica switch is said once, and later maps do not try the dead copy first.

d0.t's master is on n0, its replica on n1. n0 is killed as soon as it runs a map; the maps of
d0.t that start after the driver has learnt it (n0's attempts are lost, or a map reports the
copy unreadable) read the replica first, so only maps already running can say
`reading replica`, and each says it once (a log record beside the stderr line used to print
it twice).
"""
from __future__ import annotations

import collections
import re
from pathlib import Path

from tests.faults.fault_helpers import (FaultCluster, assert_same_output, kill, wait_job, workers_running,
                                        write_corpus)
from tests.node.node_helpers import wait_until

SWITCH = re.compile(r"^(m\d+\.a\d+): .*d0\.t: .*reading replica", re.M)


def test_dead_master_switch_said_once_and_remembered(tmp_path: Path, secret_file: Path) -> None:
    corpus = write_corpus(Path("."), disks=2, files=20, lines=20)
    c = FaultCluster(tmp_path, secret_file, corpus)
    try:
        c.start(nodes=3, cpus=2)
        slots = 3 * 2
        out = tmp_path / "out"
        job = c.start_job(out, delay=0.3, extra=("--split-size", "1"))
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
    finally:
        c.stop()
