"""Finding the registry: its URL forms, and zeroconf (DNS-SD) advertising and browsing.

The registry advertises `_geryon._tcp.local.` with TXT `version`, `cluster` (see
`registry.auth.cluster_id`) and `scheme` (`https` when it serves TLS); clients browse with a fresh zeroconf instance each time, so
records of a registry killed with -9 (cached up to 4500 s by long-lived listeners) are
not offered. mDNS is discovery, not liveness: callers still connect to check.
"""
from __future__ import annotations

import logging
import queue
import socket
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from typing import TYPE_CHECKING

from registry import tls
from registry.defaults import DEFAULT_PORT
from registry.errors import BadRequest

if TYPE_CHECKING:                   # zeroconf is imported where it is used: a client given a URL never needs it
    from zeroconf import InterfaceChoice, ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_geryon._tcp.local."
"""The DNS-SD service type of a Geryon registry."""


DEFAULT_DISCOVERY_TIMEOUT = 2.0
"""Seconds to browse for a registry before giving up."""

PROTOCOL_VERSION = "1"
"""Advertised in TXT `version`; clients ignore registries of other versions."""


def parse_registry_url(text: str) -> str:
    """`http://host:port`, `host:port`, `tcp!host!port` or `tcp!host` -> `http://host:port`.

    Forms without a scheme mean `https` in a process that speaks TLS to its cluster
    (`registry.tls.use_cluster_tls`).

    Raises:
        BadRequest: not an address.
    """
    text = text.strip()
    if "!" in text:
        parts = text.split("!")
        if len(parts) not in (2, 3) or parts[0] not in ("tcp", "net") or not parts[1]:
            raise BadRequest(f"bad registry address {text!r}")
        host = "127.0.0.1" if parts[1] == "*" else parts[1]
        service = parts[2] if len(parts) == 3 and parts[2] not in ("", "registry") else str(DEFAULT_PORT)
        text = f"{tls.scheme()}://{host}:{service}"
    elif "://" not in text:
        text = f"{tls.scheme()}://" + text
    try:
        split = urlsplit(text)
        port = split.port or DEFAULT_PORT
    except ValueError as exc:
        raise BadRequest(f"bad registry address {text!r}: {exc}") from exc
    if split.scheme not in ("http", "https") or not split.hostname:
        raise BadRequest(f"bad registry address {text!r}")
    host = split.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{split.scheme}://{host}:{port}"


def _interfaces(interfaces: Sequence[str] | None) -> InterfaceChoice | list[str]:
    from zeroconf import InterfaceChoice

    return list(interfaces) if interfaces else InterfaceChoice.All


def listen_interfaces(host: str, interfaces: Sequence[str] | None) -> list[str] | None:
    """The interfaces (by address) a server bound to `host` is announced on; None: all, []: none.

    Explicit `interfaces` win; a server bound to one address (loopback, or one interface's)
    is announced on that interface only, so a registry forced to 127.0.0.1 is never
    offered to the rest of the network; a wildcard address means every interface. One
    IPv6 address is announced nowhere: zeroconf here announces IPv4 addresses only, and
    the server listens on none of them.
    """
    if interfaces:
        return list(interfaces)
    if host in ("", "0.0.0.0", "::"):
        return None                                 # every interface
    if ":" in host:
        return []
    try:
        return [socket.gethostbyname(host)]
    except OSError:
        return None


def advertised_addresses(host: str, interfaces: Sequence[str] | None) -> list[str]:
    """IPv4 addresses to advertise for a server bound to `host`."""
    if interfaces:
        return list(interfaces)
    if host not in ("", "0.0.0.0", "::"):
        try:
            return [socket.gethostbyname(host)]
        except OSError:
            return [host]
    import ifaddr                                  # zeroconf's own dependency
    addrs = [str(ip.ip) for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if ip.is_IPv4 and not str(ip.ip).startswith("127.")]
    return addrs or ["127.0.0.1"]


class Advertiser:
    """Advertises one registry over zeroconf; an async context manager.

    Args:
        port: the registry's port.
        addresses: IPv4 addresses to advertise.
        cluster: the cluster id (TXT `cluster`).
        interfaces: interfaces zeroconf listens and answers on (None: all).
        scheme: TXT `scheme`, `https` when the registry serves TLS.
    """

    def __init__(self, port: int, addresses: Sequence[str], cluster: str, *,
                 interfaces: Sequence[str] | None = None, scheme: str = "http") -> None:
        from zeroconf import ServiceInfo

        self.info = ServiceInfo(
            SERVICE_TYPE, f"geryon-{cluster}-{port}.{SERVICE_TYPE}",
            parsed_addresses=list(addresses), port=port,
            properties={"version": PROTOCOL_VERSION, "cluster": cluster, "scheme": scheme},
            server=f"geryon-{cluster}-{port}.local.")
        self._interfaces = interfaces
        self._zc: AsyncZeroconf | None = None

    async def start(self) -> None:
        """Start answering; probing and announcing go on in the background."""
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncZeroconf

        self._zc = AsyncZeroconf(interfaces=_interfaces(self._interfaces), ip_version=IPVersion.V4Only)
        await self._zc.async_register_service(self.info, allow_name_change=True)
        log.info("advertising %s over zeroconf", self.info.name)

    async def close(self) -> None:
        """Withdraw the advertisement; idempotent."""
        zc, self._zc = self._zc, None
        if zc is not None:
            try:
                await zc.async_unregister_all_services()
            finally:
                await zc.async_close()

    async def __aenter__(self) -> Advertiser:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def discover(timeout: float = DEFAULT_DISCOVERY_TIMEOUT, *, cluster: str | None = None,
             interfaces: Sequence[str] | None = None) -> list[str]:
    """Browse for registries; return URLs of the first matching answer(s), maybe none.

    Args:
        timeout: seconds to wait for an answer.
        cluster: accept only this cluster id (None: any).
        interfaces: interfaces to browse on (None: all).
    """
    from zeroconf import DNSQuestionType, IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

    deadline = time.monotonic() + timeout
    names: queue.Queue[str] = queue.Queue()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.put(name)

    zc = Zeroconf(interfaces=_interfaces(interfaces), ip_version=IPVersion.V4Only)
    urls: list[str] = []
    try:
        # QM: ask for multicast answers. zeroconf's default first query is QU (unicast
        # reply), which never arrives on some stacks (loopback here), costing a second.
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change],
                                 question_type=DNSQuestionType.QM)
        try:
            while not urls:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    name = names.get(timeout=left)
                except queue.Empty:
                    break
                info = ServiceInfo(SERVICE_TYPE, name)
                if not (info.load_from_cache(zc)
                        or info.request(zc, max(1, int((deadline - time.monotonic()) * 1000)))):
                    continue
                props = {k.decode(): (v or b"").decode(errors="replace")
                         for k, v in info.properties.items()}
                if props.get("version") != PROTOCOL_VERSION:
                    continue
                if cluster is not None and props.get("cluster") != cluster:
                    log.debug("ignoring registry %s of cluster %s", name, props.get("cluster"))
                    continue
                scheme = "https" if props.get("scheme") == "https" else "http"
                urls += [f"{scheme}://{addr}:{info.port}" for addr in info.parsed_addresses(IPVersion.V4Only)]
        finally:
            browser.cancel()
    finally:
        zc.close()
    return urls
