"""The state file: persist entries saved across registry restarts.

JSON (never pickle), written atomically: a temporary file in the same directory,
fsync, rename. Only persist entries are saved; everything else is soft state that
registrants re-announce. This module does not decide when to save (the server does).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from registry.errors import RegistryError
from registry.store import Service

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def save_state(path: Path, entries: list[tuple[Service, str]]) -> None:
    """Atomically replace `path` with `entries` (`(service, owner)` pairs).

    Raises:
        RegistryError: the file cannot be written.
    """
    doc = {"format": FORMAT_VERSION,
           "services": [{"service": s.to_wire(), "owner": owner} for s, owner in entries]}
    data = json.dumps(doc, indent=1).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror or exc}") from exc


def load_state(path: Path) -> list[tuple[Service, str]]:
    """The entries saved in `path`; none if it does not exist.

    Raises:
        RegistryError: the file exists but cannot be read or is not a state file.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror}") from exc
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown format {doc.get('format')!r}")
        out = []
        for item in doc["services"]:
            owner = item["owner"]
            if not isinstance(owner, str):
                raise ValueError("owner is not a string")
            out.append((Service.from_wire(item["service"]), owner))
        return out
    except (ValueError, KeyError, TypeError, AttributeError, RegistryError) as exc:
        raise RegistryError(f"{path}: not a registry state file: {exc}") from exc
