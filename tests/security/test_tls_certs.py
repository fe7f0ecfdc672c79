"""`geryon init --tls`: a cluster CA made once, host certificates it signs, bad TLS options refused."""
from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from geryon.cli import main
from registry.errors import RegistryError
from registry.tls import TlsFiles, client_context, server_context
from tests.node.node_helpers import GERYON


def _handshake(files: TlsFiles, ca: Path | None, name: str = "127.0.0.1") -> str:
    """One TLS handshake on loopback with these files; returns what the client read."""
    server_ctx = server_context(files)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError):
                pass

        t = threading.Thread(target=serve)
        t.start()
        try:
            with socket.create_connection(("127.0.0.1", port), 10) as raw, \
                    client_context(ca).wrap_socket(raw, server_hostname=name) as tls:
                return tls.recv(5).decode()
        finally:
            t.join(10)


def test_init_tls_makes_the_ca_once_and_a_certificate_for_this_host(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", "--tls", "--tls-name", "geryon-test.example"])
    assert result.exit_code == 0, result.output
    tls = Path(os.environ["XDG_CONFIG_HOME"]) / "geryon" / "tls"
    for name in ("ca.key", "key.pem"):
        assert stat.S_IMODE((tls / name).stat().st_mode) == 0o600
    assert "made the cluster CA" in result.output
    files = TlsFiles(tls / "cert.pem", tls / "key.pem", tls / "ca.pem")
    assert _handshake(files, files.ca) == "hello"
    assert _handshake(files, files.ca, name="geryon-test.example") == "hello"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, files.ca, name="not-this-host.example")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, None)                    # the system's CAs do not know ours

    ca_before, cert_before = (tls / "ca.pem").read_bytes(), (tls / "cert.pem").read_bytes()
    again = CliRunner().invoke(main, ["init", "--tls"])   # the secret and the CA are kept
    assert again.exit_code == 0 and "made the cluster CA" not in again.output
    assert (tls / "ca.pem").read_bytes() == ca_before and (tls / "cert.pem").read_bytes() != cert_before
    assert _handshake(files, files.ca) == "hello"


def test_another_cluster_ca_is_not_trusted(tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["init", "--tls", "--tls-dir", str(tmp_path / "a")]).exit_code == 0
    assert CliRunner().invoke(main, ["init", "--tls", "--tls-dir", str(tmp_path / "b")]).exit_code == 0
    a = TlsFiles(tmp_path / "a" / "cert.pem", tmp_path / "a" / "key.pem")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(a, tmp_path / "b" / "ca.pem")


def test_bad_tls_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="needs both"):
        server_context(TlsFiles(tmp_path / "cert.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(RegistryError, match="junk.pem"):
        client_context(tmp_path / "junk.pem")
    for extra, why in ((["--tls-cert", str(tmp_path / "junk.pem")], "needs both --tls-cert and --tls-key"),
                       (["--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", str(tmp_path / "junk.pem")],
                        "junk.pem")):
        done = subprocess.run([*GERYON, "node", "--standalone", "--listen", "127.0.0.1:0", *extra],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("geryon: ") and why in last
