"""Cluster mode with no faults: same bytes as local mode, parts on the nodes, clear errors."""
from __future__ import annotations

from tests.faults.fault_helpers import FaultCluster, assert_same_output, wait_job


def test_cluster_output_equals_local_mode(fault_cluster: FaultCluster) -> None:
    out = fault_cluster.tmp / "out"
    code, stdout, stderr = wait_job(fault_cluster.start_job(out))
    assert code == 0, stderr
    assert_same_output(out, fault_cluster.reference(), fault_cluster.corpus)

