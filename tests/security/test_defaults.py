"""Secure by default on one machine: no configuration still means a secret, required by every server.

The attack (issue 11, case 3): on a shared host, another local user (`nobody`) speaks to a
node started with no configuration, with a stdlib-only client: a WebSocket to
`/v1/cpu/run` carrying a command, and an unsigned PUT of a file. Both must be refused,
the secret file must be unreadable to that user, and the node's own user must still get
through with the ordinary CLI.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from geryon.disks.chunk import create_chunk
from tests.node.node_helpers import GERYON, Proc, wait_until

ATTACK = r'''
import base64, json, os, socket, struct, sys
host, port, secret_path, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {"uid": os.getuid()}
try:
    open(secret_path, "rb").read()
    out["secret"] = "read"
except OSError as exc:
    out["secret"] = type(exc).__name__

def status(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()

# 1. the rcpu WebSocket, unsigned, then the command frame if the server lets us in
sock = socket.create_connection((host, port), 10)
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall((f"GET /v1/cpu/run HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
out["ws"] = status(sock)
if " 101 " in out["ws"]:
    payload = json.dumps({"cmd": f"id -u > {marker}"}).encode()
    mask = os.urandom(4)
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    sock.settimeout(5)
    try:
        sock.recv(4096)
    except OSError:
        pass
sock.close()

# 2. an unsigned PUT of a file into the node's chunk
body = b"written by nobody"
sock = socket.create_connection((host, port), 10)
sock.sendall((f"PUT /v1/chunks/c0/file?path=pwned HTTP/1.1\r\nHost: {host}:{port}\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
out["put"] = status(sock)
sock.close()
print(json.dumps(out))
'''


def _python_for_nobody() -> list[str] | None:
    """A Python interpreter user `nobody` may run (ours may live in a private home)."""
    runuser = shutil.which("runuser")
    if runuser is None or os.geteuid() != 0:
        return None
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if candidate and subprocess.run([runuser, "-u", "nobody", "--", candidate, "-c", "pass"],
                                        capture_output=True).returncode == 0:
            return [runuser, "-u", "nobody", "--", candidate]
    return None


def test_init_and_first_use_create_one_private_secret_in_the_config_dir(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from geryon.cli.common import cluster_secret
    from registry.secretfile import default_secret_path

    assert default_secret_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/geryon/secret")
    assert default_secret_path({"HOME": "/h"}) == Path("/h/.config/geryon/secret")
    assert default_secret_path({"HOME": "/h", "XDG_CONFIG_HOME": "rel"}) == Path("/h/.config/geryon/secret")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "fresh" / "config"))
    first = cluster_secret(None)                 # first use: created
    path = tmp_path / "fresh" / "config" / "geryon" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert cluster_secret(None) == first         # later uses: the same one
    from geryon.cli import main

    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 1 and "exists" in result.output


def test_a_named_secret_file_must_exist(tmp_path: Path) -> None:
    result = subprocess.run([*GERYON, "node", "--standalone", "--listen", "127.0.0.1:0",
                             "--secret-file", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("geryon: ") and "missing" in result.stderr


def test_an_unconfigured_node_refuses_another_local_user(tmp_path: Path) -> None:
    nobody = _python_for_nobody()
    if nobody is None:
        pytest.skip("needs root and runuser, and a Python `nobody` can run")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}   # nothing configured
    chunk = tmp_path / "c0"
    create_chunk(str(chunk), 1 << 20)
    marker = Path("/tmp") / f"geryon-nobody-{os.getpid()}"
    procs: list[Proc] = []
    try:
        registry = Proc([*GERYON, "registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns"],
                        tmp_path / "registry.err", env=env)
        procs.append(registry)
        line = registry.readline()
        registry_url = line.split("listening on", 1)[1].split()[0]
        node = Proc([*GERYON, "node", "--name", "n0", "--listen", "127.0.0.1:0", "--disk", f"c0={chunk}",
                     "--registry", registry_url, "--work-dir", str(tmp_path / "work"), "--refresh", "0.2"],
                    tmp_path / "node.err", env=env)
        procs.append(node)
        url = node.readline().split("listening on", 1)[1].split()[0]
        secret = home / ".config" / "geryon" / "secret"
        # Each server says once where its secret is; the first one made it.
        assert f"cluster secret {secret} (created now" in registry.stderr()
        assert node.stderr().count(f"cluster secret {secret}") == 1
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600

        host, port = url.split("://", 1)[1].rsplit(":", 1)
        attack = subprocess.run([*nobody, "-I", "-c", ATTACK, host, port, str(secret), str(marker)],
                                capture_output=True, text=True, timeout=60, cwd="/")
        assert attack.returncode == 0, attack.stderr
        seen = json.loads(attack.stdout)
        assert seen["uid"] != os.getuid()
        assert seen["secret"] == "PermissionError"
        assert " 401 " in seen["ws"], seen
        assert " 401 " in seen["put"], seen
        assert not marker.exists()
        assert not (chunk / "pwned").exists()
        assert "refused GET /v1/cpu/run" in node.stderr() and "request is not signed" in node.stderr()

        # The node's own user, through the ordinary CLI and the same default secret, gets in.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")} | env
        wait_until(lambda: subprocess.run([*GERYON, "regquery", "--registry", registry_url, "svc", "rstyx"],
                                          capture_output=True, text=True, env=full_env).stdout, 30)
        run = subprocess.run([*GERYON, "rcpu", "--registry", registry_url, "id -u"],
                             capture_output=True, text=True, timeout=60, env=full_env)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == str(os.getuid())
    finally:
        for p in procs:
            p.stop()
        marker.unlink(missing_ok=True)
