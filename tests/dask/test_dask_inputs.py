"""Inputs of a job on a real Dask cluster besides local paths: fsspec URLs (`file://` directories,
files and globs) and `geryon://` disks (a node's chunk by HOST:PORT/CHUNK, a disk name through the
registry, its replica when the master's node is dead), read by the workers themselves; the
output is byte-identical to local mode on the same data. Inputs that are not there, a wrong
secret or a dead node are one line, exit 1, before anything runs."""
from __future__ import annotations

import pathlib
import shutil
import socket

import pytest

from registry.auth import create_secret
from tests.node.node_helpers import Cluster, wait_until

REPO = pathlib.Path(__file__).resolve().parents[2]
MAP = str(REPO / "examples" / "wordcount" / "map.py")
REDUCE = str(REPO / "examples" / "wordcount" / "reduce.py")


def _run(geryon_cli, inputs, out, *mode, env=None):
    return geryon_cli("mapreduce", "-q", MAP, REDUCE, *map(str, inputs), *mode, "-R", "3", "--out", str(out),
                      env=env)


def _one_line_failure(done, out: pathlib.Path, *words: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("geryon: "), done.stderr
    for w in words:
        assert w in lines[0], done.stderr
    assert not out.exists() or not list(out.iterdir())


def test_file_urls_read_as_the_same_paths_do(dask_cluster, geryon_cli, text_disks, tmp_path, read_parts) -> None:
    one = sorted(text_disks[0].iterdir())[3]
    paths = [text_disks[0], f"{text_disks[1]}/copy of 00*.msg", one]
    urls = [f"file://{text_disks[0]}", f"file://{text_disks[1]}/copy of 00*.msg", f"file://{one}"]
    local, out = tmp_path / "local out", tmp_path / "dask out"
    done = _run(geryon_cli, paths, local, "--local")
    assert done.returncode == 0, done.stderr
    done = _run(geryon_cli, urls, out, "--dask", dask_cluster.address)
    assert done.returncode == 0, done.stderr
    assert read_parts(out) == read_parts(local) and len(read_parts(out)) == 3
    assert (out / "_SUCCESS").is_file()


def test_urls_that_cannot_be_read_fail_in_one_line(dask_cluster, geryon_cli, text_disks, tmp_path) -> None:
    out = tmp_path / "out"
    dask = ("--dask", dask_cluster.address)
    _one_line_failure(_run(geryon_cli, [f"file://{tmp_path}/no such dir"], out, *dask), out,
                      "no such dir", "no such file or directory")
    _one_line_failure(_run(geryon_cli, [text_disks[0], "memory://words"], out, *dask), out,
                      "memory://words", "Dask workers cannot read it")
    _one_line_failure(_run(geryon_cli, ["nosuch://bucket/words"], out, *dask), out,
                      "nosuch://bucket/words: cannot open")


@pytest.fixture
def nodes(tmp_path: pathlib.Path, text_disks):
    """A registry and two nodes whose chunk c0 holds a copy of the first text disk under `mail/`;
    the cluster's ndb names it d0.mail (master on n0, replica on n1)."""
    root = tmp_path / "geryon cluster"
    root.mkdir()
    create_secret(root / "secret")
    cluster = Cluster(root, root / "secret")
    try:
        cluster.start_registry()
        for name in ("n0", "n1"):
            node = cluster.start_node(name, ["c0"])
            shutil.copytree(text_disks[0], node.chunks["c0"] / "mail")
        cluster.name_disks("name=d0.mail kfs master=n0!c0 replica=d0.mail.r1\nname=d0.mail.r1 kfs master=n1!c0\n")
        with cluster.client() as reg:
            wait_until(lambda: len([s for s in reg.find({"chunk": "*"}) if s.get("addr")]) == 2, 30)
        yield cluster
    finally:
        cluster.stop()


def test_geryon_disks_by_node_and_by_name_with_failover(nodes, cluster_with, geryon_cli, text_disks, tmp_path,
                                                        read_parts) -> None:
    secret = {"GERYON_SECRET_FILE": str(nodes.secret_file)}
    driver = {**secret, "GERYON_REGISTRY": nodes.registry_url}
    dask = cluster_with(secret)     # the workers find the secret as the CLI does
    n1 = nodes.nodes["n1"].url.split("://", 1)[1]
    local = tmp_path / "local out"
    assert _run(geryon_cli, [text_disks[0], text_disks[0]], local, "--local").returncode == 0
    out = tmp_path / "dask out"
    done = _run(geryon_cli, [f"geryon://{n1}/c0/mail", "geryon://d0.mail/mail"], out, "--dask", dask.address,
                env=driver)
    assert done.returncode == 0, done.stderr
    assert read_parts(out) == read_parts(local)
    # the master's node dies: the name still reads, from the replica
    nodes.nodes["n0"].kill()
    single_local, single = tmp_path / "single local", tmp_path / "from the replica"
    assert _run(geryon_cli, [text_disks[0]], single_local, "--local").returncode == 0
    done = _run(geryon_cli, ["geryon://d0.mail/mail"], single, "--dask", dask.address, env=driver)
    assert done.returncode == 0, done.stderr
    assert read_parts(single) == read_parts(single_local)


def test_geryon_inputs_that_cannot_be_read_fail_in_one_line(nodes, dask_cluster, geryon_cli, tmp_path) -> None:
    n1 = nodes.nodes["n1"].url.split("://", 1)[1]
    good = {"GERYON_SECRET_FILE": str(nodes.secret_file), "GERYON_REGISTRY": nodes.registry_url}
    create_secret(tmp_path / "other secret")
    out = tmp_path / "out"
    dask = ("--dask", dask_cluster.address)
    _one_line_failure(_run(geryon_cli, [f"geryon://{n1}/c0/mail"], out, *dask,
                           env={**good, "GERYON_SECRET_FILE": str(tmp_path / "other secret")}), out,
                      f"geryon://{n1}/c0/mail")
    _one_line_failure(_run(geryon_cli, [f"geryon://{n1}/c0/no such dir"], out, *dask, env=good), out,
                      "no such dir")
    _one_line_failure(_run(geryon_cli, ["geryon://d9.mail"], out, *dask, env=good), out, "d9.mail")
    with socket.socket() as s:      # a node that is not there
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    _one_line_failure(_run(geryon_cli, [f"geryon://{dead}/c0"], out, *dask, env=good), out, dead)
