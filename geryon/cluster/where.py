"""Where a command runs, this machine or a cluster: one rule for every verb and the Python API.

The rule, first match wins (README, "Local or cluster"):

1. `--local` (`local=True`): this machine.
2. `--registry URL` or $GERYON_REGISTRY: that registry's cluster.
3. Every disk or file the command names is on this machine (a directory, a file or glob, an
   ndb disk with `path=`): this machine, at once, without looking for a cluster.
4. Otherwise (a name that is not here, or a command that names no data: `exec`, `status`,
   `taskfs`, `geryon.session()`): a registry of this cluster (its secret's cluster id)
   answering over zeroconf within `DEFAULT_FIND_WAIT` seconds; else this machine — or,
   when a name is not here, an error naming it.

Not here: option parsing (`geryon.cli.common`), zeroconf itself (`registry.discovery`), the
registry client.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from geryon.errors import GeryonError, UnknownDisk
from geryon.defaults import DEFAULT_FIND_WAIT

log = logging.getLogger(__name__)

ENV_REGISTRY = "GERYON_REGISTRY"
"""The registry to use, as `--registry` (read only at the edges: the CLI, `session_where`)."""

ENV_MDNS_INTERFACES = "GERYON_MDNS_INTERFACES"
"""Interface addresses zeroconf browses on (space or comma separated; default: all)."""


@dataclass(frozen=True)
class Where:
    """Where a command runs: `registry` is the cluster's registry URL, None for this machine."""

    registry: str | None
    why: str

    @property
    def local(self) -> bool:
        return self.registry is None


def choose(*, local: bool = False, registry: str | None = None, names_data: bool = False,
           elsewhere: str | None = None, find: Callable[[], Sequence[str]] = lambda: ()) -> Where:
    """Apply the rule (module docstring).

    Args:
        local: `--local`.
        registry: `--registry` or $GERYON_REGISTRY.
        names_data: the command names disks or files (mapreduce, ls, disk check, ...).
        elsewhere: why some named disk is not on this machine (None: every one is here).
        find: looks for this cluster's registry over zeroconf; the URLs that answered.
    Raises:
        UnknownDisk: `elsewhere` is set and no registry answered.
    """
    if local:
        return Where(None, "--local")
    if registry:
        return Where(registry, "--registry")
    if names_data and elsewhere is None:
        return Where(None, "every disk named is on this machine")
    urls = list(find())
    if urls:
        log.info("found registry %s over zeroconf", urls[0])
        return Where(urls[0], "found over zeroconf")
    if elsewhere is not None:
        raise UnknownDisk(f"{elsewhere}; and no cluster answered over zeroconf "
                          f"(give --registry URL or GERYON_REGISTRY)")
    return Where(None, "no registry answered over zeroconf")


def zeroconf_finder(secret: bytes | None, interfaces: Sequence[str] | None = None,
                    wait: float = DEFAULT_FIND_WAIT) -> Callable[[], list[str]]:
    """A `find` for `choose`: this cluster's registries over zeroconf (none without a secret)."""
    def find() -> list[str]:
        if secret is None:
            return []
        from registry.auth import cluster_id
        from registry.discovery import discover

        return discover(wait, cluster=cluster_id(secret), interfaces=interfaces)
    return find


def interfaces_from(text: str) -> tuple[str, ...] | None:
    """$GERYON_MDNS_INTERFACES's addresses (None: every interface)."""
    out = tuple(text.replace(",", " ").split())
    return out or None


def api_where(local: bool, secret: bytes | None, environ: Mapping[str, str], *, names_data: bool = False,
              elsewhere: str | None = None) -> tuple[Where, bytes | None]:
    """The rule for the Python API (`geryon.session()`, `Job.run`), reading `environ` as the CLI
    reads its options: $GERYON_REGISTRY, else zeroconf with the secret given or the default
    secret file (if one exists: without one no cluster of ours can answer), else this machine.

    Returns:
        Where, and the secret to use (the default file's when none was given).
    Raises:
        UnknownDisk: `elsewhere` is set and no registry answered.
    """
    if secret is None and not local:
        secret = _default_secret(environ)
    where = choose(local=local, registry=environ.get(ENV_REGISTRY) or None, names_data=names_data,
                   elsewhere=elsewhere,
                   find=zeroconf_finder(secret, interfaces_from(environ.get(ENV_MDNS_INTERFACES, ""))))
    return where, secret


def _default_secret(environ: Mapping[str, str]) -> bytes | None:
    from registry.errors import RegistryError
    from registry.secretfile import default_secret_path, load_secret

    named = environ.get("GERYON_SECRET_FILE")
    path = Path(named) if named else default_secret_path(environ)
    if not os.path.exists(path):
        return None
    try:
        return load_secret(path)
    except RegistryError as exc:
        raise GeryonError(str(exc)) from exc
