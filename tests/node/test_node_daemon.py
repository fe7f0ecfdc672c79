"""The node daemon: what it registers, refreshing, registry restarts, SIGTERM, security."""
from __future__ import annotations

import http.client
import json
import os
import signal
import time
from urllib.parse import urlsplit

import fs
import fs.opener
import pytest
from fs import errors as fserrors

from geryon.errors import DiskFull
from geryon.disks.opendisk import open_disk
from geryon.disks.remote import GeryonOpener, NodeUnavailable, RemoteFS
from node_helpers import Cluster, wait_until
from registry.signer import Signer


def raw(url: str, method: str, target: str, secret: bytes | None, body: bytes = b"",
        extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        headers = Signer(secret).headers_sync(url, method, target, body, headers=extra)
        conn.request(method, target, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_registers_chunks_and_cpu_and_refreshes(cluster: Cluster, secret: bytes) -> None:
    cluster.start_registry()
    node = cluster.start_node("n1", ["c0"], capacity=10_000, extra=["--cpus", "3"])
    with cluster.client() as reg:
        chunk = wait_until(lambda: reg.find({"resource": "kfs", "name": "n1", "id": "c0"}), 10)[0]
        cpu = wait_until(lambda: reg.find({"svc": "rstyx", "host": "n1"}), 10)[0]
        assert chunk.get("capacity") == "10000" and chunk.get("free") == "10000"
        assert chunk.get("url") == node.chunk_url("c0")
        assert cpu.get("ncpu") == "3" and cpu.get("os") and cpu.get("arch")
        assert float(cpu.get("load") or "-1") >= 0 and int(cpu.get("memfree") or "0") > 0
        (node.chunks["c0"] / "f").write_bytes(b"x" * 1000)
        wait_until(lambda: reg.find({"resource": "kfs", "id": "c0"})[0].get("free") == "9000", 5)


def test_reregisters_after_registry_restart_and_unregisters_on_sigterm(cluster: Cluster) -> None:
    registry = cluster.start_registry()
    port = urlsplit(cluster.registry_url).port
    node = cluster.start_node("n1", ["c0"])
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"name": "n1"})) == 1 and reg.find({"host": "n1"}), 10)
    registry.expected_exit = True
    registry.stop(signal.SIGKILL)
    cluster.start_registry(port=port)
    started = time.monotonic()
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"name": "n1"})) == 1 and reg.find({"host": "n1"}), 5)
        assert time.monotonic() - started < 3.5
        node.proc.send(signal.SIGTERM)
        assert node.proc.popen.wait(10) == 0
        assert reg.find({"name": "n1"}) == [] and reg.find({"host": "n1"}) == []


def test_unauthenticated_requests_are_refused(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n1", ["c0"], register=False)
    (node.chunks["c0"] / "f").write_text("data")
    for method, target in (("GET", "/v1/chunks/c0/file?path=f"), ("GET", "/v1/chunks"),
                           ("GET", "/v1/cpu/run"), ("PUT", "/v1/chunks/c0/file?path=g")):
        assert raw(node.url, method, target, None)[0] == 401
        assert raw(node.url, method, target, b"w" * 32)[0] == 401          # wrong secret
    assert raw(node.url, "GET", "/v1/chunks/c0/file?path=f", secret) == (200, b"data")
    assert raw(node.url, "GET", "/v1/chunks/c0/file?path=f", secret, extra={"Range": "bytes=1-2"}) == (206, b"at")
    with pytest.raises(NodeUnavailable, match="secret"):
        RemoteFS(node.url, "c0", b"w" * 32).listdir("/")
    assert not (node.chunks["c0"] / "g").exists()


def test_paths_escaping_the_chunk_are_refused(cluster: Cluster, secret: bytes, tmp_path: os.PathLike) -> None:
    node = cluster.start_node("n1", ["c0"], register=False)
    outside = cluster.tmp / "outside.txt"
    outside.write_text("secret stuff")
    os.symlink(outside, node.chunks["c0"] / "link")
    for target in ("/v1/chunks/c0/file?path=../outside.txt", "/v1/chunks/c0/file?path=/../../etc/passwd",
                   "/v1/chunks/c0/file?path=link"):
        status, body = raw(node.url, "GET", target, secret)
        assert status == 403 and b"escapes" in body, (target, body)
    op = json.dumps({"op": "listdir", "args": {"path": "../"}}).encode()
    assert raw(node.url, "POST", "/v1/chunks/c0/op", secret, op)[0] == 403
    os.symlink(cluster.tmp, node.chunks["c0"] / "out")
    (node.chunks["c0"] / "mine").write_text("x")
    op = json.dumps({"op": "move", "args": {"src": "mine", "dst": "out/stolen"}}).encode()
    assert raw(node.url, "POST", "/v1/chunks/c0/op", secret, op)[0] == 403
    assert not (cluster.tmp / "stolen").exists()
    status, _ = raw(node.url, "PUT", "/v1/chunks/c0/file?path=../evil", secret, b"x")
    assert status == 403 and not (cluster.tmp / "evil").exists()


def test_capacity_enforced_remotely_leaving_nothing_behind(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n1", ["c0"], capacity=1000, register=False)
    with RemoteFS(node.url, "c0", secret) as remote:
        remote.writebytes("a", b"1" * 600)
        with pytest.raises(DiskFull):
            remote.writebytes("b", b"2" * 600)
        with pytest.raises(DiskFull):
            with remote.openbin("c", "w") as f:
                f.write(b"3" * 500)
        with pytest.raises(DiskFull):
            remote.upload("d", __import__("io").BytesIO(b"4" * 2000))
        assert remote.listdir("/") == ["a"]
        assert remote.usage()["free"] == 400
    assert sorted(os.listdir(node.chunks["c0"])) == [".geryon-disk", "a"]


def test_replicas_are_read_only(cluster: Cluster, secret: bytes) -> None:
    path = cluster.tmp / "replica"
    path.mkdir()
    (path / "f").write_text("copy")
    node = cluster.start_node("n1", [], register=False, extra=["--replica", f"r0={path}"])
    with RemoteFS(node.url, "r0", secret) as remote:
        assert remote.readtext("f") == "copy"
        with pytest.raises(fserrors.ResourceReadOnly):
            remote.writetext("g", "no")
        with pytest.raises(fserrors.ResourceReadOnly):
            remote.remove("f")
    assert sorted(os.listdir(path)) == ["f"]


def test_opener_and_disk_names_through_the_registry(cluster: Cluster, secret: bytes) -> None:
    cluster.name_disks("name=d0.mbox kfs master=n1!c0\n")
    cluster.start_registry()
    node = cluster.start_node("n1", ["c0"])
    (node.chunks["c0"] / "m1").write_text("message one")
    fs.opener.registry.install(GeryonOpener)
    with fs.open_fs(f"{node.chunk_url('c0')}?secret_file={cluster.secret_file}") as remote:
        assert remote.readtext("m1") == "message one"
    with cluster.client() as reg:
        wait_until(lambda: any(s.get("addr") for s in reg.find({"chunk": "c0"})), 10)
        disk = open_disk("d0.mbox", registry=reg, secret=secret)
        with disk.fs:
            assert disk.name == "d0.mbox" and disk.fs.listdir("/") == ["m1"]
            f = disk.fs.openbin("m1")
            assert f.read(3) == b"mes" and f.seek(8) == 8 and f.read() == b"one"
            f.close()


def test_ls_cat_cp_on_names_paths_and_urls(cluster: Cluster) -> None:
    cluster.name_disks("name=d0.mbox kfs master=n1!c0\n")
    cluster.start_registry()
    node = cluster.start_node("n1", ["c0"])
    (node.chunks["c0"] / "m1").write_text("message one\n")
    with cluster.client() as reg:
        wait_until(lambda: any(s.get("addr") for s in reg.find({"chunk": "c0"})), 10)
    local = cluster.tmp / "local.txt"
    local.write_text("from the client\n")
    assert cluster.cli("cp", str(local), "d0.mbox:/").returncode == 0
    assert cluster.cli("cp", "d0.mbox:m1", str(cluster.tmp / "back.txt")).returncode == 0
    assert (cluster.tmp / "back.txt").read_text() == "message one\n"
    ls = cluster.cli("ls", "d0.mbox")
    assert ls.stdout.split() == ["local.txt", "m1"], ls.stderr
    url = node.chunk_url("c0")
    assert cluster.cli("cat", "d0.mbox:local.txt", f"{url}/m1").stdout == "from the client\nmessage one\n"
    assert cluster.cli("ls", "-l", f"{url}/m1").stdout.split() == ["12", "m1"]
    assert cluster.cli("ls", str(node.chunks["c0"])).stdout.split() == ["local.txt", "m1"]
    missing = cluster.cli("cat", "d0.mbox:nope")
    assert missing.returncode == 1 and missing.stderr.startswith("geryon: ") and "nope" in missing.stderr


def test_startup_script_serves_every_disk_and_stops_on_sigterm(cluster: Cluster, tmp_path: os.PathLike) -> None:
    import subprocess
    import sys
    from pathlib import Path
    from node_helpers import Proc
    cluster.start_registry()
    tmp = Path(tmp_path)
    wrapper = tmp / "geryon"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import click; from geryon.cli import main; "
                       f"from geryon.cli.node import commands\nfor c in commands: main.add_command(c)\n"
                       f"main()' \"$@\"\n")
    wrapper.chmod(0o755)
    disks = tmp / "disks"
    (disks / "c0").mkdir(parents=True)
    (disks / "c1").mkdir()
    script = Path(__file__).resolve().parents[2] / "shell" / "geryon-node.sh"
    env = {"GERYON": str(wrapper), "GERYON_DISKS": str(disks), "GERYON_NODE_NAME": "boot1",
           "GERYON_LISTEN": "127.0.0.1:0", "GERYON_WORK": str(tmp / "work"),
           "GERYON_DEFAULTS": str(tmp / "none"), "GERYON_REGISTRY": cluster.registry_url,
           "GERYON_SECRET_FILE": str(cluster.secret_file), "PATH": os.environ["PATH"]}
    proc = Proc(["sh", str(script)], tmp / "boot.err", env=env)
    try:
        assert "node boot1 listening on" in proc.readline(20)
        with cluster.client() as reg:
            chunks = wait_until(lambda: len(reg.find({"name": "boot1"})) == 2 and reg.find({"name": "boot1"}), 10)
            assert sorted(s.get("id") for s in chunks) == ["c0", "c1"]
            assert all(s.get("capacity") == str(64 << 20) for s in chunks)
            proc.send(signal.SIGTERM)
            assert proc.popen.wait(10) == 0
            assert reg.find({"name": "boot1"}) == []
    finally:
        proc.stop()
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


def test_node_started_before_the_registry_registers_when_it_appears(cluster: Cluster) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster.registry_url = f"http://127.0.0.1:{port}"
    cluster.start_node("n1", ["c0"])                    # serves at once, registry or not
    cluster.start_registry(port=port)
    with cluster.client() as reg:
        wait_until(lambda: reg.find({"name": "n1", "id": "c0"}) and reg.find({"host": "n1"}), 10)
