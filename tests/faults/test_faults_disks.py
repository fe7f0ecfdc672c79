"""A node whose output disk is full: its tasks retry on other cpus, and it is excluded.

Two ways to be full: a chunk whose capacity is too small for a map output (runs anywhere),
and a real filesystem out of space (an 8 KiB tmpfs; mounting one needs root, as CI has).
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.fault_helpers import FaultCluster, assert_same_output, attempts, job_events, wait_job


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 KiB tmpfs: room for a chunk's metadata, not for a map output."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt / "c0"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_output_chunk_retries_elsewhere(tmp_path: Path, secret_file: Path,
                                             corpus: dict[str, dict[str, bytes]]) -> None:
    _full_disk_retries_elsewhere(tmp_path, secret_file, corpus, tmp_path / "small-c0", 4096)


def test_full_output_filesystem_retries_elsewhere(tmp_path: Path, secret_file: Path,
                                                  corpus: dict[str, dict[str, bytes]], tiny_disk: Path) -> None:
    _full_disk_retries_elsewhere(tmp_path, secret_file, corpus, tiny_disk, 64 << 20)


def _full_disk_retries_elsewhere(tmp_path: Path, secret_file: Path, corpus: dict[str, dict[str, bytes]],
                                 out_chunk: Path, capacity: int) -> None:
    c = FaultCluster(tmp_path, secret_file, corpus)
    try:
        c.start(out_chunk={"n2": out_chunk}, out_capacity=capacity)
        out = tmp_path / "out"
        code, _, err = wait_job(c.start_job(out))
        assert code == 0, err
        assert_same_output(out, c.reference(), c.corpus)
        full = [a for a in attempts(c.jobs_dir) if a["cpu"] == "n2" and a["state"] == "failed"]
        assert full and all("space" in a["error"] or "full" in a["error"] for a in full), full
        done_elsewhere = {a["task"] for a in attempts(c.jobs_dir) if a["state"] == "done"}
        assert {a["task"] for a in full} <= done_elsewhere
        if len(full) >= 3:
            assert "n2 excluded" in job_events(c.jobs_dir)
    finally:
        c.stop()
