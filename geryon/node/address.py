"""The address a node advertises: one that other machines of the cluster can reach.

A node listening on every interface (`0.0.0.0`) must name one address in its registry
entries. The host name is no guide: Debian maps it to `127.0.1.1`, containers to
`127.0.0.1`, and a node registered as `tcp!127.0.0.1!6676` is unreachable from any other
machine (and collides with every other such node). So the choice is, in order: `--advertise`;
the address the node listens on, if it names one; the local address of the route to the
registry (a UDP socket connected to the registry, read with getsockname: nothing is sent);
the local address of the default route; the host name's address, if an interface has it; any interface's address.
Loopback is chosen only when the registry is on this machine too (or not known); otherwise
the node refuses to start, naming `--advertise`. `choose_address` is pure (its lookups are
parameters); the default lookups touch sockets. Not here: listening, registering.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from geryon.errors import GeryonError

log = logging.getLogger(__name__)

WILDCARDS = ("", "0.0.0.0", "::")
"""Listen hosts that mean every interface."""

DEFAULT_ROUTE_PROBE = "198.51.100.1"
"""An address off this machine (RFC 5737 TEST-NET-2) whose route is the default route."""


def is_loopback(host: str | None) -> bool:
    """Whether `host` (an address or a name such as `localhost`) is this machine's loopback."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def route_source(to: str) -> str | None:
    """The local address packets to `to` leave from (None: no route, or not resolvable)."""
    try:
        family = socket.AF_INET6 if ":" in to else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((to.strip("[]"), 9))      # UDP connect: picks the route, sends nothing
            return str(s.getsockname()[0])
    except OSError:
        return None


def hostname_address() -> str | None:
    """What the host name resolves to (None: it does not)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def interface_addresses() -> list[str]:
    """This machine's IPv4 interface addresses."""
    import ifaddr                                  # zeroconf's own dependency

    return [str(ip.ip) for adapter in ifaddr.get_adapters() for ip in adapter.ips if ip.is_IPv4]


@dataclass(frozen=True)
class Lookups:
    """Where `choose_address` gets its facts (tests pass their own)."""

    route_source: Callable[[str], str | None] = route_source
    hostname_address: Callable[[], str | None] = hostname_address
    interface_addresses: Callable[[], Sequence[str]] = interface_addresses


def choose_address(listen_host: str, advertise: str | None = None, registry_host: str | None = None,
                   lookups: Lookups = Lookups()) -> str:
    """The address this node's registry entries name.

    Args:
        listen_host: the host of `--listen` (a wildcard means every interface).
        advertise: `--advertise`, which always wins.
        registry_host: the registry's host when known (`--registry`), else None.
    Raises:
        GeryonError: only loopback is on offer and the registry is on another machine (one
            line naming `--advertise`).
    """
    if advertise:
        return advertise
    remote = registry_host is not None and not is_loopback(registry_host)
    if listen_host not in WILDCARDS:
        if remote and is_loopback(listen_host):
            raise GeryonError(f"listening on {listen_host} only, but the registry ({registry_host}) is on another "
                              f"machine: listen on an address it can reach (--listen) and name it with --advertise ADDR")
        return listen_host
    candidates = []
    if remote:
        candidates.append(lookups.route_source(str(registry_host)))
    candidates.append(lookups.route_source(DEFAULT_ROUTE_PROBE))
    mine = list(lookups.interface_addresses())
    by_name = lookups.hostname_address()
    if by_name in mine:           # /etc/hosts may name an address of another network namespace
        candidates.append(by_name)
    candidates += mine
    for addr in candidates:
        if addr and not is_loopback(addr) and addr not in WILDCARDS:
            return addr
    if remote:
        raise GeryonError(f"no address other machines can reach: this machine offers only loopback, and the "
                          f"registry ({registry_host}) is on another machine: name one with --advertise ADDR")
    log.info("no network address: advertising 127.0.0.1 (a one-machine cluster)")
    return "127.0.0.1"
