"""The CLI verbs: Inferno output, exit statuses, the secret file, register -- CMD."""
from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from geryon.cli import main
from registry.client import RegistryClient

from registry_helpers import SERVE


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("GERYON_OWNER", "tester")
    return {}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_init_writes_a_private_secret_in_the_config_dir(env: dict[str, str], tmp_path: Path) -> None:
    code, out = run("init")
    path = tmp_path / "config" / "geryon" / "secret"
    assert code == 0 and str(path) in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    code, out = run("init")
    assert code == 1 and "exists" in out
    other = tmp_path / "other"
    assert run("init", "--secret-file", str(other))[0] == 0 and other.exists()


def test_query_verbs_print_inferno_lines(env: dict[str, str], tmp_path: Path,
                                        serve_thread: Callable[..., object]) -> None:
    assert run("init")[0] == 0
    from registry.auth import load_secret
    secret = load_secret(tmp_path / "config" / "geryon" / "secret")
    server = serve_thread(secret=secret)
    url = server.url  # type: ignore[attr-defined]
    with RegistryClient(url, secret=secret, owner="tester") as c:
        c.register("tcp!h0!7001", {"name": "h0", "id": "chunk0", "note": "it's"})
        c.register("tcp!h1!7001", {"name": "h1", "id": "chunk0"})
        c.register("p", {"persist": "1"})
        assert run("regquery", "--registry", url, "id", "chunk0") == (
            0, "tcp!h0!7001 name h0 id chunk0 note 'it''s'\ntcp!h1!7001 name h1 id chunk0\n")
        assert run("regquery", "-n", "--registry", url, "note", "*") == (0, "tcp!h0!7001\n")
        assert run("registry", "regquery", "-n", "--registry", url) == (0, "tcp!h0!7001\ntcp!h1!7001\np\n")
        code, out = run("regquery", "--registry", url, "odd")
        assert code == 1 and "odd attribute/value pairs" in out
        assert run("services", "--registry", url)[1].splitlines()[2] == "p persist 1"
        assert run("unregister", "--registry", url, "p") == (0, "")
        code, out = run("unregister", "--registry", url, "--owner", "mallory", "tcp!h0!7001")
        assert code == 1 and "permission denied" in out
        assert [s.name for s in c.index()] == ["tcp!h0!7001", "tcp!h1!7001"]
        code, out = run("services", "--registry", url, "--secret-file", str(tmp_path / "nope"))
        assert code == 1 and "nope" in out


def test_register_keeps_name_while_command_runs(procs: object, secret_file: Path, secret: bytes,
                                                serve_thread: Callable[..., object], tmp_path: Path) -> None:
    server = serve_thread(secret=secret)
    url = server.url  # type: ignore[attr-defined]
    probe = ("import subprocess, sys; out = subprocess.run(" + repr(SERVE) + " + ['regquery', '-n', "
             f"'--registry', {url!r}, '--secret-file', {str(secret_file)!r}, 'svc', 'x'], "
             "capture_output=True, text=True).stdout; print(out, end=''); sys.exit(3)")
    done = subprocess.run(SERVE + ["register", "--registry", url, "--secret-file", str(secret_file),
                                   "tcp!me!1", "svc", "x", "--", "python3", "-c", probe],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "tcp!me!1\n"
    with RegistryClient(url, secret=secret) as c:
        assert c.index() == []


def test_watch_prints_changes(env: dict[str, str], secret_file: Path, secret: bytes,
                              serve_thread: Callable[..., object], tmp_path: Path) -> None:
    server = serve_thread(secret=secret)
    url = server.url  # type: ignore[attr-defined]
    watcher = subprocess.Popen(SERVE + ["watch", "--initial", "--registry", url, "--secret-file",
                                        str(secret_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        assert watcher.stdout is not None
        with RegistryClient(url, secret=secret, owner="o") as c:
            c.register("ready", {"persist": "1"})
            assert watcher.stdout.readline() == "add ready persist 1\n"   # connected now
            c.register("a", {"x": "1"})
            c.update("a", {"y": "2"})
            c.unregister("a")
        lines = [watcher.stdout.readline() for _ in range(3)]
        assert lines == ["add a x 1\n", "update a x 1 y 2\n", "remove a x 1 y 2\n"]
    finally:
        watcher.kill()
        watcher.wait()
        if watcher.stdout:
            watcher.stdout.close()
