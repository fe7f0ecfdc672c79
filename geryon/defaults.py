"""Geryon's defaults: the numbers and names a user meets (ports, budgets, sizes, timeouts), in one place.

Each is a constructor or option default (`geryon.cli` shows them in --help); the module that
uses one re-imports it under the name it always had, so code and tests that reach it there keep
working. Internal tuning constants (buffer sizes, poll intervals, protocol bounds) stay beside the
code they tune; `tests/test_defaults_module.py` lists them, so a new `DEFAULT_*` goes here or
into that list on purpose.

Not here: the registry's own defaults (`registry.defaults`: its port, connection limits), which
the `registry` package keeps below geryon.
"""
from __future__ import annotations

import os

# -- Ports, addresses, finding a cluster -------------------------------------------------------

DEFAULT_NODE_PORT = 6676
"""The node daemon's TCP port (one above the registry's 6675)."""

DEFAULT_UI_PORT = 7075
"""Where the dashboard listens unless told (on loopback: `geryon ui`, `registry serve --ui`)."""

DEFAULT_UI_LISTEN = f"127.0.0.1:{DEFAULT_UI_PORT}"
"""Where the dashboard listens unless told: loopback only."""

DEFAULT_FIND_WAIT = 2.0
"""Seconds a command waits for a registry to answer over zeroconf (DESIGN: found within 2 s)."""

# -- Jobs --------------------------------------------------------------------------------------

DEFAULT_PARTITIONS = 5
"""R, the number of reduce partitions: the seed's value."""

DEFAULT_SORT_BUDGET = 256 << 20
"""Memory a map or reduce task may use for sorting before it spills to disk (bytes)."""

DEFAULT_SPLIT_SIZE = 64 << 20
"""The smallest split the planner picks on its own for large inputs (the chunk size)."""

DEFAULT_MAX_ATTEMPTS = 4
"""Attempts per task before the job fails (Hadoop's default)."""

DEFAULT_LEASE = 5.0
"""Seconds a node may stay silent before its attempts are given up (DESIGN: dead after 5 s)."""

DEFAULT_STEP_OUTPUT_GRACE = 30.0
"""Seconds a node keeps a multi-step job's intermediate step output after its driver's last hold
on it closed (a driver reconnecting after a network hiccup or a node restart takes it back well
within it): `geryon node --step-output-grace`."""

DEFAULT_DASK_CONNECT_TIMEOUT = 10.0
"""Seconds to reach the Dask scheduler before the job fails."""

DEFAULT_KEEP = 100
"""Jobs kept in a store; `begin` removes older ones."""

DEFAULT_JOBS_LISTED = 20
"""Jobs `geryon jobs` shows without -n."""

# -- Disks and data ----------------------------------------------------------------------------

DEFAULT_CAPACITY = 64 << 20
"""A chunk's capacity when none is given: 64 MiB, the seed's chunk size."""

DEFAULT_CHUNK_SIZE = DEFAULT_CAPACITY
"""Data bytes per chunk disk when none is given: 64 MiB, the seed's chunk."""

DEFAULT_DISK_DIR = "disks"
"""Where chunk disks are made when no `--to` is given, relative to the current directory."""

DEFAULT_NDB = os.path.join("ndb", "cluster")
"""The local ndb file read when none is named (-f, --ndb, $GERYON_NDB), relative to the current directory (Inferno: /lib/ndb/local)."""

DEFAULT_SPOOL = 8 << 20
"""Bytes of a file being written kept in memory before spilling to a temporary file."""

DEFAULT_UNPACK_MAX_BYTES = 256 << 20
"""Unpacked bytes one archive may hold (a job pack's or an export's files), at most."""

DEFAULT_UNPACK_MAX_MEMBERS = 10_000
"""Members (files, directories, links) one archive may hold, at most."""

# -- Nodes, commands, sessions -----------------------------------------------------------------

DEFAULT_NODE_REFRESH = 1.0
"""Seconds between refreshes of the load, memory and free-space attributes."""

DEFAULT_MAX_EXPORT = 1 << 30
"""Largest export a node accepts, in bytes (held in memory while it is unpacked), when it sets no unpacked-bytes limit."""

DEFAULT_KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL when a command (rcpu, dsh) or a session's instances are stopped."""

DEFAULT_SESSION_CONNECT_TIMEOUT = 5.0
"""Seconds to open a session on a node before giving up on it."""

DEFAULT_RCPU_CONNECT_TIMEOUT = 5.0
"""Seconds to reach a cpu before trying the next one."""

# -- The dashboard -----------------------------------------------------------------------------

DEFAULT_UI_REFRESH = 1.0
"""Seconds between readings of the registry and the nodes."""

# -- Secrets -----------------------------------------------------------------------------------

DEFAULT_ROTATE_GRACE = 24 * 3600.0
"""Seconds the old secret stays valid after `geryon init --rotate` (24 h)."""
