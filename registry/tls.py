"""Optional TLS for a cluster: server contexts from a host's certificate, client contexts from the cluster CA.

HMAC signing (`registry.auth`) authenticates every request whether or not TLS is on; TLS
adds privacy (nobody on the path reads the bytes) and a server proven by the cluster's CA.
A process speaks TLS to the cluster once `use_cluster_tls(ca)` was called (the CLI does it
when a CA is configured, a node hands it to its workers): every `geryon://` and `tcp!`
address then means `https://`, verified against that CA and only it. Stdlib only. Not
here: making keys and certificates (`geryon.cluster.tlscerts`), reading options or the
environment (the CLI), signing.
"""
from __future__ import annotations

import http.client
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import RegistryError

log = logging.getLogger(__name__)

TLS_DIR = "tls"
"""The directory, beside the cluster secret, that `geryon init --tls` writes."""

CA_CERT = "ca.pem"
"""The cluster CA's certificate (copy it to every machine and client)."""

CA_KEY = "ca.key"
"""The cluster CA's private key (keep it where certificates are made; mode 0600)."""

HOST_CERT = "cert.pem"
"""This host's certificate, signed by the cluster CA."""

HOST_KEY = "key.pem"
"""This host's private key (mode 0600)."""


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate and key, and the CA its peers are verified against."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    @property
    def serving(self) -> bool:
        """True when a server should listen with TLS."""
        return self.cert is not None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The SSL context a server listens with (TLS 1.2 or later).

    Raises:
        RegistryError: no certificate, or the files do not load (one line, naming them).
    """
    if files.cert is None or files.key is None:
        raise RegistryError("TLS needs both a certificate and its key (--tls-cert, --tls-key)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise RegistryError(f"TLS certificate {files.cert} / key {files.key}: {_why(exc)}") from exc
    return ctx


def client_context(ca: Path | None) -> ssl.SSLContext:
    """The SSL context a client verifies servers with: the cluster CA only (else the system's).

    Raises:
        RegistryError: the CA file does not load.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)      # no system CAs: the cluster's only
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(f"TLS CA {ca}: {_why(exc)}") from exc
    return ctx


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__


# -- the process's cluster TLS setting ---------------------------------------------------
_client: ssl.SSLContext | None = None
_ca: Path | None = None


def use_cluster_tls(ca: Path | None, *, enabled: bool = True) -> None:
    """Speak TLS to every cluster server from now on, verifying it against `ca`.

    `enabled=False` (or never calling this) means plain HTTP. Called once at start-up by
    the CLI and by node workers; tests call it to switch.
    """
    global _client, _ca
    _client = client_context(ca) if enabled else None
    _ca = ca if enabled else None


def cluster_ssl() -> ssl.SSLContext | None:
    """The client context for cluster servers, or None when the cluster speaks plain HTTP."""
    return _client


def cluster_ca() -> Path | None:
    """The CA file given to `use_cluster_tls` (handed on to worker processes)."""
    return _ca


def scheme() -> str:
    """`https` when this process speaks TLS to the cluster, else `http`."""
    return "https" if _client is not None else "http"


def ssl_for(url: str) -> ssl.SSLContext | bool:
    """What to pass as aiohttp's `ssl=` for `url`: the cluster context for https, else True."""
    if url.startswith("https://") and _client is not None:
        return _client
    return True


def base_url(authority: str) -> str:
    """`http(s)://host:port` for a cluster server named without a scheme (`geryon://`, `tcp!`)."""
    return f"{scheme()}://{authority}"


def http_connection(url: str, host: str, port: int | None, **kwargs: Any) -> http.client.HTTPConnection:
    """A stdlib connection to a cluster server: HTTPS (verified by the cluster CA) for https URLs."""
    if url.startswith("https://"):
        ctx = _client or ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, context=ctx, **kwargs)
    return http.client.HTTPConnection(host, port, **kwargs)


def connector() -> Any:
    """An aiohttp connector for a session that talks to cluster servers (the cluster CA for https)."""
    import aiohttp                       # only callers that already use aiohttp pay for it

    return aiohttp.TCPConnector(ssl=_client if _client is not None else True)
