"""Claims: a load's lease on a chunk it is filling, kept in the chunk's `.geryon-claim` file.

A claimed chunk whose lease (`until`, wall-clock seconds, so it survives a restart) ran out is
taken back by its node (`ChunkService.reclaim`); the load renews the claim while it fills the
chunk and drops it when the chunk is named. Not here: the ops' routes (`geryon.node.chunkservice`).
"""
from __future__ import annotations

import json
import os
import secrets
from typing import TYPE_CHECKING, Any

from geryon.disks.chunk import CLAIM_NAME, TEMP_MARK

if TYPE_CHECKING:
    from geryon.node.chunkops import ServedChunk


def write_claim(chunk: ServedChunk, lease: float, now: float) -> dict[str, Any]:
    """Claim (or renew the claim on) a chunk until `now + lease` (wall-clock seconds)."""
    path = os.path.join(chunk.fs.root_path, CLAIM_NAME)
    tmp = f"{path}{TEMP_MARK}{secrets.token_hex(4)}"
    with open(tmp, "w") as f:
        json.dump({"until": now + lease}, f)
    os.replace(tmp, path)
    return {"lease": lease}


def drop_claim(chunk: ServedChunk) -> None:
    """The load is done with the chunk: it is no longer reclaimed."""
    try:
        os.unlink(os.path.join(chunk.fs.root_path, CLAIM_NAME))
    except FileNotFoundError:
        pass


def claim_expired(chunk: ServedChunk, now: float) -> bool:
    """Whether the chunk is claimed and its lease ran out (an unreadable claim has)."""
    try:
        with open(os.path.join(chunk.fs.root_path, CLAIM_NAME)) as f:
            until = json.load(f)["until"]
        return float(until) < now
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return True
