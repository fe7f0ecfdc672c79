"""Geryon's Unix filters (`intermediate`, `agg`, `idx`) and command-block helpers.

The filters are the seed's (inferno-lab 37): they read bytes from a stream, keep
memory bounded, and can be used in any Unix pipe; `shell.block` starts command blocks
for streaming jobs. Stdlib only; imports nothing else of Geryon's.
"""
from __future__ import annotations

from shell.agg import Aggregator, aggregate, parse_count
from shell.block import block_body, command_argv, is_command_block, start, stop
from shell.errors import BadRecord, BlockNotStarted, OutputUnavailable, ShellError
from shell.idx import index, index_lines, index_words
from shell.intermediate import IntermediateResult, partition_paths, route_lines, write_partitions
from shell.partition import (
    geryon_hash,
    geryon_hash_bytes,
    geryon_partition,
    geryon_partition_bytes,
    geryon_partitioner,
)

__all__ = [
    "Aggregator",
    "BadRecord",
    "BlockNotStarted",
    "IntermediateResult",
    "OutputUnavailable",
    "ShellError",
    "aggregate",
    "block_body",
    "command_argv",
    "geryon_hash",
    "geryon_hash_bytes",
    "geryon_partition",
    "geryon_partition_bytes",
    "geryon_partitioner",
    "index",
    "index_lines",
    "index_words",
    "is_command_block",
    "parse_count",
    "partition_paths",
    "route_lines",
    "start",
    "stop",
    "write_partitions",
]
