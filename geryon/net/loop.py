"""The loop thread every client of ours runs its asyncio sessions on (`LoopThread`).

Defined in `registry.loopthread` so that the registry client, which may not import `geryon`,
uses the same class; geryon's callers import it from here: the job driver's node connection
(`geryon.mapreduce.jobnodes.Nodes`), taskfs sessions and FUSE (`geryon.taskfs.client`).
"""
from __future__ import annotations

from registry.loopthread import DEFAULT_DRAIN_TIMEOUT, LoopClosed, LoopThread, cancel_the_rest

__all__ = ["DEFAULT_DRAIN_TIMEOUT", "LoopClosed", "LoopThread", "cancel_the_rest"]
