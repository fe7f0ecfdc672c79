"""Named disks follow the ndb file and the chunk services, with nobody running refresh."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import ndb

from registry.client import RegistryClient
from registry.disks import DiskName, disk_names, plan
from registry.store import Service

from registry_helpers import wait_until

NDB = """\
name=d0.mbox kfs
  master=host0!chunk0
  replica=d0.replica
name=d0.replica kfs master=host1!chunk0 replica
name=notadisk master=host9!chunk9
"""


def test_disk_names_from_ndb_entries() -> None:
    assert disk_names(ndb.parse(NDB, "cluster")) == [
        DiskName("d0.mbox", "host0", "chunk0", "d0.replica"),
        DiskName("d0.replica", "host1", "chunk0", ""),
    ]


def test_plan_carries_host_addr_replica() -> None:
    disks = disk_names(ndb.parse(NDB, "cluster"))
    chunks = [Service("tcp!host0!7001", (("name", "host0"), ("id", "chunk0"))),
              Service("tcp!host0!7002", (("name", "host0"), ("id", "chunk1")))]
    assert plan(disks, chunks) == {
        "d0.mbox": (("host", "host0"), ("chunk", "chunk0"), ("addr", "tcp!host0!7001"), ("replica", "d0.replica")),
        "d0.replica": (("host", "host1"), ("chunk", "chunk0"), ("replica", "")),
    }


def test_server_follows_ndb_file_and_chunk_services(serve_thread: Callable[..., object], secret: bytes,
                                                    tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "cluster"
    db.write_text(NDB)
    server = serve_thread(secret=secret, ndb_path=db, ndb_poll=0.05)
    url = server.url  # type: ignore[attr-defined]
    with RegistryClient(url, secret=secret, owner="node0") as node0, \
            RegistryClient(url, secret=secret, owner="me") as me:
        disk = lambda name: next((s for s in me.index() if s.name == name), None)  # noqa: E731
        wait_until(lambda: disk("d0.mbox") is not None, 3)
        assert disk("d0.mbox").get("addr") is None                                  # type: ignore[union-attr]
        assert disk("d0.mbox").line() == "d0.mbox host host0 chunk chunk0 replica d0.replica"  # type: ignore[union-attr]

        node0.register("tcp!host0!7001", {"name": "host0", "id": "chunk0"})     # the chunk appears
        t = wait_until(lambda: disk("d0.mbox").get("addr") == "tcp!host0!7001", 2)  # type: ignore[union-attr]
        assert t < 1.0
        assert [s.name for s in me.find({"addr": "*"})] == ["d0.mbox"]

        node0.unregister("tcp!host0!7001")                                         # ... and goes
        wait_until(lambda: disk("d0.mbox").get("addr") is None, 2)                  # type: ignore[union-attr]

        db.write_text(NDB.replace("host0!chunk0", "host2!chunk5") + "name=d1.mbox kfs master=host0!chunk1\n")
        wait_until(lambda: disk("d1.mbox") is not None and disk("d0.mbox").get("host") == "host2", 3)  # type: ignore[union-attr]
        db.write_text("name=d1.mbox kfs master=host0!chunk1\n")
        wait_until(lambda: disk("d0.mbox") is None and disk("d0.replica") is None, 3)
        db.write_text("name=d1.mbox kfs master=host0!chunk1\n  broken='unterminated\n")
        wait_until(lambda: any("keeping 1 named disks" in r.getMessage() for r in caplog.records), 10)  # it read it
        assert disk("d1.mbox") is not None                         # a bad edit keeps the last good reading
