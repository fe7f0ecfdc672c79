"""`ChunkFS` and `FailoverFS` pass pyfilesystem2's own conformance suite (`fs.test.FSTestCases`).

The suite is the `fs.base.FS` contract: every implementation runs the same cases
(`RemoteFS` against a live node: tests/node/test_node_remotefs_conformance.py). A chunk
with a capacity must behave as any filesystem while it has room; a `FailoverFS` over two
local copies writes to its master and reads through the verified failover path.
"""
from __future__ import annotations

import tempfile
import unittest

from fs.test import FSTestCases

from geryon.disks.chunk import ChunkFS, create_chunk
from geryon.disks.failover import Copy, FailoverFS


class _TempDirs:
    """A fresh temporary directory per case, removed after it."""

    def _tempdir(self) -> str:
        tmp = tempfile.TemporaryDirectory(prefix="geryon-fs-contract-")
        self.addCleanup(tmp.cleanup)  # type: ignore[attr-defined]
        return tmp.name


class TestChunkFS(_TempDirs, FSTestCases, unittest.TestCase):
    def make_fs(self) -> ChunkFS:
        return create_chunk(self._tempdir() + "/c0", 64 << 20)


class TestPlainDirectoryChunkFS(_TempDirs, FSTestCases, unittest.TestCase):
    """A plain directory served as it is (no metadata file, no capacity)."""

    def make_fs(self) -> ChunkFS:
        return ChunkFS(self._tempdir())


class TestFailoverFS(_TempDirs, FSTestCases, unittest.TestCase):
    def make_fs(self) -> FailoverFS:
        master, replica = (create_chunk(self._tempdir() + "/c", 64 << 20) for _ in range(2))
        return FailoverFS("d0", [Copy("d0", master.root_path, master, root=master.root_path),
                                 Copy("d0.r1", replica.root_path, replica, root=replica.root_path)])
