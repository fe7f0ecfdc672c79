"""Dask mode's inputs: what the driver plans from, and the URL each worker opens.

Local paths (which the workers must see), `geryon://` chunks and ndb-named disks (master first,
then replicas), and fsspec URLs (`geryon.disks.urlfs`), listed here so that a missing or
unreadable input is one line before anything runs. Not here: reading them (the workers,
`geryon.mapreduce.daskworker.open_input`), running the job (`geryon.mapreduce.daskcpu`).
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


def resolve_dask_inputs(args: Sequence[Any], ndb: str | None = None,
                        registry: Any = None) -> tuple[list[Any], dict[str, tuple[str, tuple[str, ...]]]]:
    """A Dask job's inputs as the driver plans them (`Disk`s) and, for those that are not local
    paths, the URL each worker opens and its replicas' (by disk name).

    `geryon://HOST:PORT/CHUNK[/PATH]` is a node's chunk; `geryon://NAME[/PATH]` a disk the cluster's
    ndb names, found in the registry (`registry`, else $GERYON_REGISTRY, else zeroconf), master
    first; `SCHEME://...` any fsspec URL (`geryon.disks.urlfs`); anything else a local path, a
    glob or an ndb name (`geryon.disks.resolve.resolve_inputs`).

    Raises:
        UnknownDisk: an input that is not there, or cannot be listed (a bad secret, a dead node).
    """
    from geryon.disks.resolve import Disk, resolve_inputs
    from geryon.disks.urlfs import is_url, open_url

    resolved: list[Any] = []
    locations: dict[str, tuple[str, tuple[str, ...]]] = {}
    owned = None
    try:
        for arg in args:
            text = str(arg)
            if isinstance(arg, Disk):
                resolved.append(arg)
            elif text.startswith("geryon://"):
                if (registry is None or isinstance(registry, str)) and not _names_a_node(text):
                    registry = owned = _registry_for(text, registry)
                disk, urls = _geryon_disk(text, registry)
                resolved.append(disk)
                locations[disk.name] = (urls[0], urls[1:])
            elif is_url(text):
                ufs = open_url(text)
                ufs.files()     # there, and listable (one line if not)
                resolved.append(Disk(text, ufs))
                locations[text] = (ufs.base_url(), ())
            else:
                resolved.extend(resolve_inputs([text], ndb))
    finally:
        if owned is not None:
            owned.close()
    return resolved, locations


_NODE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+):\d+")
"""HOST:PORT, a `geryon://` URL's first part when it names a node (else it names a disk)."""


def _names_a_node(url: str) -> bool:
    return bool(_NODE.fullmatch(url[len("geryon://"):].partition("/")[0]))


def _registry_for(url: str, registry_url: str | None = None) -> Any:
    """A registry client for a `geryon://NAME` input: `registry_url`, else the Python API's rule."""
    from geryon.cluster.where import api_where
    from geryon.disks.remote import library_secret
    from registry.client import RegistryClient

    secret = library_secret()
    if not registry_url:
        where, _ = api_where(False, secret, os.environ, names_data=True,
                             elsewhere=f"{url} names a disk (set GERYON_REGISTRY to the registry naming it)")
        registry_url = where.registry
    return RegistryClient(registry_url, secret=secret, owner="mapreduce")


def _geryon_disk(url: str, registry: Any) -> tuple[Any, tuple[str, ...]]:
    """A `geryon://` input: a `Disk` on its first copy that lists, and every live copy's URL."""
    from geryon.cluster.members import ClusterDisk, find_disk
    from geryon.disks.remote import RemoteFS, library_secret
    from geryon.disks.resolve import Disk
    from geryon.errors import UnknownDisk
    from geryon.net.connection import parse_node_url

    if _names_a_node(url):
        found = find_disk(url, None)
    else:
        name, _, rest = url[len("geryon://"):].partition("/")
        named = find_disk(name, registry)
        found = ClusterDisk(url, named.locations, "/" + rest.strip("/") if rest.strip("/") else "", named.format)
    secret = library_secret()
    last: Exception | None = None
    for i, loc in enumerate(found.locations):
        node, chunk = parse_node_url(loc)
        fs = RemoteFS(node, chunk, secret)
        try:
            if found.only and not fs.exists(found.only):
                raise UnknownDisk(f"{url}: no such file or directory")
            fs.listdir("/")
        except UnknownDisk:
            fs.close()
            raise
        except Exception as exc:   # a dead or refusing copy: the next one
            fs.close()
            last = exc
            continue
        return Disk(found.name, fs, only=found.only, format=found.format), tuple(found.locations[i:])
    raise UnknownDisk(f"{url}: cannot be read: {last}")


__all__ = ["resolve_dask_inputs"]
