"""`geryon rcpu` as a user runs it: output disk, exit status, round robin, --export, Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from node_helpers import VERB_CLI, Cluster, wait_until

NDB = "name=d1.cpu kfs master=n1!out\nname=d2.cpu kfs master=n2!out\nname=d0.mbox kfs master=n2!c0\n"


@pytest.fixture
def two(cluster: Cluster) -> Iterator[Cluster]:
    cluster.name_disks(NDB)
    cluster.start_registry()
    cluster.start_node("n1", ["out"])
    cluster.start_node("n2", ["out", "c0"])
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"svc": "rstyx"})) == 2 and
                   len([s for s in reg.find({"chunk": "*"}) if s.get("addr")]) == 3, 10)
    yield cluster


def test_rcpu_prints_output_disk_and_returns_status_round_robin(two: Cluster) -> None:
    runs = [two.cli("rcpu", "{ echo on $GERYON_NODE; echo err >&2; exit 2 }") for _ in range(2)]
    assert [r.returncode for r in runs] == [2, 2]
    assert sorted(r.stdout for r in runs) == ["on n1\nd1.cpu\n", "on n2\nd2.cpu\n"]
    assert all(r.stderr == "err\n" for r in runs)


def test_pick_local_runs_where_the_disk_is(two: Cluster) -> None:
    runs = [two.cli("rcpu", "--pick", "local", "echo $GERYON_NODE; ls $n/d0.mbox", "d0.mbox")
            for _ in range(3)]
    assert [r.stdout for r in runs] == ["n2\nd2.cpu\n"] * 3, [r.stderr for r in runs]
    bad = two.cli("rcpu", "--pick", "random", "true")
    assert bad.returncode == 2 and "random" in bad.stderr


def test_export_ships_client_files_once(two: Cluster) -> None:
    job = two.tmp / "job"
    job.mkdir()
    (job / "run.sh").write_text("echo job says $1\n")
    for _ in range(4):
        r = two.cli("rcpu", "--export", str(job), "sh $n/client/run.sh hi")
        assert r.returncode == 0 and r.stdout.startswith("job says hi\n"), r.stderr
    for name in ("n1", "n2"):
        assert len(os.listdir(two.tmp / f"work-{name}" / "exports")) == 1


def test_output_streams_and_ctrl_c_kills_the_remote_command(two: Cluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"GERYON_REGISTRY": two.registry_url, "GERYON_SECRET_FILE": str(two.secret_file),
                "XDG_STATE_HOME": str(two.tmp / "state")})
    proc = subprocess.Popen([*VERB_CLI, "rcpu", "echo $$; exec sleep 30"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())           # arrives while the command still runs
        os.kill(pid, 0)
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        assert proc.returncode == 130
        assert proc.stderr is not None and "interrupted" in proc.stderr.read()

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{pid}/stat") as f:       # a zombie not yet reaped counts as gone
                return f.read().split()[2] == "Z"
        wait_until(gone, 5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close() if proc.stdout else None
        proc.stderr.close() if proc.stderr else None
