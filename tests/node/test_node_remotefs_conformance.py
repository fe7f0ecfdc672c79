"""`RemoteFS` against a live node daemon passes pyfilesystem2's own conformance suite."""
from __future__ import annotations

import shutil
import unittest
from collections.abc import Iterator
from pathlib import Path

import pytest
from fs.test import FSTestCases

from geryon.disks.chunk import META_NAME
from geryon.disks.remote import RemoteFS
from node_helpers import Cluster
from registry.auth import create_secret, load_secret


@pytest.fixture(scope="module")
def live_chunk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, bytes]]:
    tmp = tmp_path_factory.mktemp("conformance")
    create_secret(tmp / "secret")
    cluster = Cluster(tmp, tmp / "secret")
    try:
        node = cluster.start_node("n0", ["c0"], register=False)
        yield node.url, node.chunks["c0"], load_secret(tmp / "secret")
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def _attach(request: pytest.FixtureRequest, live_chunk: tuple[str, Path, bytes]) -> None:
    request.instance.live = live_chunk


class TestRemoteFS(FSTestCases, unittest.TestCase):
    live: tuple[str, Path, bytes]

    def make_fs(self) -> RemoteFS:
        url, root, secret = self.live
        for entry in root.iterdir():
            if entry.name == META_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return RemoteFS(url, "c0", secret)
