"""Library clients find the cluster secret as the CLI does (issue 11 "secure by default", 12 item 10).

A plain Python script, run as a user would (a subprocess with its own HOME and config
directory), opens a real node's chunk with `fs.open_fs("geryon://host:port/chunk")`,
`RemoteFS(...)` and `geryon.session(node=...)`, naming no secret: it is found in the
default file, or through $GERYON_SECRET_FILE; with none anywhere, the script fails with
one line naming `geryon init`, and never sends an unsigned request.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.node.node_helpers import Cluster

SCRIPT = textwrap.dedent("""
    import sys
    import fs
    import geryon
    from geryon.disks.remote import RemoteFS

    url, chunk_url = sys.argv[1], sys.argv[2]
    with fs.open_fs(chunk_url) as disk:
        print("open_fs:", disk.readtext("/hello.txt"))
    with RemoteFS(url, "c0") as disk:
        print("RemoteFS:", disk.listdir("/"))
    with geryon.session(node=url) as s:
        s.reserve(1)
        s.exec("echo from-session")
        print("session:", s.stdout.read().decode().strip(), s.wait())
""")


def _run(tmp: Path, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GERYON_", "XDG_"))}
    env.update({"HOME": str(home), **env_extra})
    tmp.mkdir(parents=True, exist_ok=True)
    script = tmp / "script.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp)


def test_a_script_finds_the_default_secret_file(cluster: Cluster, secret_file: Path, tmp_path: Path) -> None:
    n0 = cluster.start_node("n0", ["c0"], register=False)
    (n0.chunks["c0"] / "hello.txt").write_text("hi there")
    user = tmp_path / "user"
    config = user / "home" / ".config" / "geryon"
    config.mkdir(parents=True, mode=0o700)
    shutil.copy(secret_file, config / "secret")
    (config / "secret").chmod(0o600)
    result = _run(user, {}, n0.url, n0.chunk_url("c0"))
    assert result.returncode == 0, result.stderr
    assert "open_fs: hi there" in result.stdout
    assert "RemoteFS: ['hello.txt']" in result.stdout
    assert "session: from-session [0]" in result.stdout
    # $XDG_CONFIG_HOME wins over ~/.config, as for the CLI.
    xdg = user / "xdg"
    (xdg / "geryon").mkdir(parents=True, mode=0o700)
    shutil.move(str(config / "secret"), xdg / "geryon" / "secret")
    result = _run(user, {"XDG_CONFIG_HOME": str(xdg)}, n0.url, n0.chunk_url("c0"))
    assert result.returncode == 0, result.stderr
    assert "open_fs: hi there" in result.stdout


def test_a_script_finds_the_secret_named_by_the_environment(cluster: Cluster, secret_file: Path,
                                                             tmp_path: Path) -> None:
    n0 = cluster.start_node("n0", ["c0"], register=False)
    (n0.chunks["c0"] / "hello.txt").write_text("named")
    result = _run(tmp_path / "user", {"GERYON_SECRET_FILE": str(secret_file)}, n0.url, n0.chunk_url("c0"))
    assert result.returncode == 0, result.stderr
    assert "open_fs: named" in result.stdout and "session: from-session [0]" in result.stdout


def test_with_no_secret_anywhere_a_script_fails_with_one_line_naming_geryon_init(
        cluster: Cluster, tmp_path: Path) -> None:
    n0 = cluster.start_node("n0", ["c0"], register=False)
    (tmp_path / "user").mkdir()
    for env in ({}, {"GERYON_SECRET_FILE": str(tmp_path / "missing")}):
        result = _run(tmp_path / "user", env, n0.url, n0.chunk_url("c0"))
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert "no cluster secret" in last and "run `geryon init`" in last, result.stderr
        assert "not signed" not in result.stderr
    assert "not signed" not in n0.proc.stderr()
    assert not (tmp_path / "user" / "home" / ".config").exists()      # a client never makes one
