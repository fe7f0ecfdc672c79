"""The test kinds of pyproject's markers: every test has one, and `-m unit` leaves the servers out."""
from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

_spec = importlib.util.spec_from_file_location("tests_root_conftest", pathlib.Path(__file__).with_name("conftest.py"))
_root = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_root)  # type: ignore[union-attr]
REPO, UNIT_FILES, kind_of = _root.REPO, _root.UNIT_FILES, _root.kind_of


def _collected(marker: str) -> set[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", marker, "-p", "no:cacheprovider"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    return {line.split("::")[0] for line in out.stdout.splitlines() if "::" in line}


def test_every_unit_file_exists_and_each_file_has_one_kind():
    for rel in UNIT_FILES:
        assert (REPO / "tests" / rel).is_file(), f"UNIT_FILES names {rel}, which is gone"
    assert kind_of(REPO / "tests/faults/test_faults_basic.py") == "faults"
    assert kind_of(REPO / "tests/node/test_node_netns.py") == "netns"
    assert kind_of(REPO / "tests/taskfs/test_taskfs_fuse.py") == "fuse"
    assert kind_of(REPO / "tests/registry/test_registry_store.py") == "unit"
    assert kind_of(REPO / "tests/node/test_node_daemon.py") == "integration"


def test_minus_m_unit_collects_the_unit_files_only():
    unit = _collected("unit")
    assert unit == {f"tests/{rel}" for rel in UNIT_FILES}
    assert not unit & _collected("integration or faults or netns or fuse")


STARTS_PROCESSES = ("start_registry(", "start_node(", "fault_cluster", "start_job(")
"""What a test file writes when it starts a registry or node daemon (tests/node/node_helpers.Cluster,
the fault cluster): such a file is not `unit`."""


def test_no_unit_file_starts_a_registry_or_a_node():
    starting = sorted(rel for rel in UNIT_FILES
                      if any(s in (REPO / "tests" / rel).read_text() for s in STARTS_PROCESSES))
    assert starting == []
    assert any(s in (REPO / "tests/data/test_data_plain_disks.py").read_text() for s in STARTS_PROCESSES)
