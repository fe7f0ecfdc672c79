"""The word count on a real Dask cluster (a scheduler and two worker processes) gives the bytes
local mode gives: through the CLI's --dask, $GERYON_DASK_SCHEDULER and the Python API."""
from __future__ import annotations

import pathlib

import pytest

from geryon.mapreduce.job import Job

REPO = pathlib.Path(__file__).resolve().parents[2]
MAP = str(REPO / "examples" / "wordcount" / "map.py")
REDUCE = str(REPO / "examples" / "wordcount" / "reduce.py")


def _local(geryon_cli, disks, out: pathlib.Path, *extra: str) -> None:
    done = geryon_cli("mapreduce", "-q", MAP, REDUCE, *map(str, disks), "--local", "--out", str(out), *extra)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("shuffle", ["auto", "transfer"])
def test_word_count_on_dask_is_byte_identical_to_local_mode(dask_cluster, geryon_cli, text_disks, tmp_path,
                                                           read_parts, shuffle) -> None:
    local, out = tmp_path / "local out", tmp_path / "dask out"
    _local(geryon_cli, text_disks, local, "-R", "3")
    done = geryon_cli("mapreduce", MAP, REDUCE, *map(str, text_disks), "--dask", dask_cluster.address,
                      "--dask-shuffle", shuffle, "-R", "3", "--out", str(out), "--split-size", "20K")
    assert done.returncode == 0, done.stderr
    assert (out / "_SUCCESS").is_file()
    assert read_parts(out) == read_parts(local) and len(read_parts(out)) == 3
    # both workers ran attempts (the summary names the attempts' cpus: the workers' addresses)
    assert "tcp://127.0.0.1:" in done.stderr
    assert not list(out.glob(".*")), "staging left behind"


def test_the_environment_names_the_scheduler(dask_cluster, geryon_cli, text_disks, tmp_path, read_parts) -> None:
    local, out = tmp_path / "local out", tmp_path / "dask out"
    _local(geryon_cli, text_disks, local)
    done = geryon_cli("mapreduce", MAP, REDUCE, *map(str, text_disks), "--out", str(out),
                      env={"GERYON_DASK_SCHEDULER": dask_cluster.address})
    assert done.returncode == 0, done.stderr
    assert "on tcp://127.0.0.1:" in done.stderr    # attempts ran on the Dask workers
    assert read_parts(out) == read_parts(local)
    jobs = geryon_cli("jobs", env={"GERYON_DASK_SCHEDULER": dask_cluster.address})
    assert jobs.returncode == 0 and "wordcount" in jobs.stdout and "succeeded" in jobs.stdout, jobs.stdout


def test_python_api_runs_on_a_client_or_an_address(dask_cluster, geryon_cli, text_disks, tmp_path,
                                                   read_parts) -> None:
    from distributed import Client

    from geryon.mapreduce.job import combine_from_script, step_from_arg

    local = tmp_path / "local out"
    _local(geryon_cli, text_disks, local)
    job = Job(map=step_from_arg(MAP, "map"), reduce=step_from_arg(REDUCE, "reduce"),
              combine=combine_from_script(REDUCE), name="wordcount", format="text")
    by_address = job.run([str(d) for d in text_disks], out=str(tmp_path / "by address"), dask=dask_cluster.address)
    assert read_parts(tmp_path / "by address") == read_parts(local)
    with Client(dask_cluster.address, timeout=30) as client:
        by_client = job.run([str(d) for d in text_disks], out=str(tmp_path / "by client"), dask=client)
        assert client.status == "running"          # the caller's client is left open
    assert read_parts(tmp_path / "by client") == read_parts(local)
    assert dict(by_client) == dict(by_address) and int(dict(by_client)["the"]) > 0


def test_an_unreachable_scheduler_is_one_line(geryon_cli, text_disks, tmp_path) -> None:
    import socket

    with socket.socket() as s:      # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    done = geryon_cli("mapreduce", MAP, REDUCE, str(text_disks[0]), "--dask", f"tcp://127.0.0.1:{port}",
                      "--out", str(out), env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert done.returncode == 1
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert lines[-1].startswith(f"geryon: Dask scheduler tcp://127.0.0.1:{port}: cannot connect"), done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() or not list(out.iterdir())


def test_the_driver_sees_every_worker_while_the_client_refreshes_its_cache(dask_cluster) -> None:
    """The driver's list of live workers is asked of the scheduler: the client's cached identity,
    which its periodic refresh overwrites with one listing no workers, missed 11 in 500 looks here
    (every worker then taken for dead: the job failed)."""
    import dask
    from distributed import Client

    from geryon.mapreduce.daskcpu import workers_of

    with dask.config.set({"distributed.client.scheduler-info-interval": "2ms"}):
        with Client(dask_cluster.address, timeout=30) as client:
            seen = [len(workers_of(client)) for _ in range(500)]
    assert seen == [2] * 500
