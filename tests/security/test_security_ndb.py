"""A hostile ndb file (`file=/dev/zero`, a 1 MiB word) never stops the registry answering."""
from __future__ import annotations

import threading
from pathlib import Path

from tests.node.node_helpers import Cluster, wait_until


def _names(services: list) -> set[str]:
    return {s.name for s in services}


def test_dev_zero_and_a_1_mib_word_in_ndb_keep_the_registry_answering(cluster: Cluster, tmp_path: Path) -> None:
    reg = cluster.start_registry()           # heartbeat 0.2 s, dead after 1 s: a frozen loop drops entries
    node = cluster.start_node("n0")
    good = "name=d0.mbox kfs master=n0!c0\n"
    cluster.name_disks(good)
    with cluster.client() as client:
        # the disk live, and the node's cpu registered too (it may come after its chunk)
        wait_until(lambda: any(s.name == "d0.mbox" and s.get("addr") for s in client.index())
                   and len(client.index()) == 3, 15)
        before = _names(client.index())
        assert "d0.mbox" in before and len(before) == 3          # cpu, chunk and named disk

    stop = threading.Event()
    finds: list[set[str]] = []
    errors: list[BaseException] = []

    def loop() -> None:
        with cluster.client() as c:
            while not stop.is_set():
                try:
                    finds.append(_names(c.index()))
                except Exception as exc:      # any failure is the test's failure
                    errors.append(exc)
                    return

    looper = threading.Thread(target=loop)
    looper.start()
    try:
        phases = [
            # 1. a database listing /dev/zero (which also names d1.mbox: the reading fails, so it must not appear)
            ("database=\n\tfile=/dev/zero\n" + good + "name=d1.mbox kfs master=n0!c0\n",
             "/dev/zero: a character device, not a regular file: refused"),
            # 2. a 1 MiB word
            (good + "name=d1.mbox kfs master=n0!c0 junk=" + "x" * (1 << 20) + "\n",
             f"{cluster.ndb}:2: line of 1048611 characters is over the limit of 262144"),
        ]
        for text, why in phases:
            seen = len(finds)
            cluster.name_disks(text)
            wait_until(lambda: why in reg.stderr(), 20)
            wait_until(lambda: len(finds) > seen + 50, 30)          # the registry kept answering
        fixed_at = len(finds)
        cluster.name_disks(good + "name=d1.mbox kfs master=n0!c0\n")  # fixed: read again
        wait_until(lambda: finds and "d1.mbox" in finds[-1], 20)
    finally:
        stop.set()
        looper.join()
    assert not errors, errors
    assert all(before <= names for names in finds), "an entry was dropped while the ndb was bad"
    assert not any("d1.mbox" in names for names in finds[:fixed_at]), "a failed reading was used"
    log = reg.stderr()
    assert "keeping 1 named disks" in log and "read again: 2 named disks" in log
    assert "Traceback" not in log and node.proc.popen.poll() is None
