"""One defaults module (issue 13 item 3): the numbers a user meets are defined in
`geryon.defaults`, and the CLI takes them from there instead of repeating them.

Read from the sources (AST): before, 89 `DEFAULT_*` were defined over 44 modules (five names
twice with one meaning: DEFAULT_NDB, DEFAULT_SPOOL, DEFAULT_KILL_GRACE, DEFAULT_MAX_EXPORT twice in
one module; three more names reused with other meanings), and `geryon mapreduce --sort-budget`,
`--lease` and `geryon init --grace` wrote their defaults as literals of their own.
"""
from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import geryon.defaults

REPO = Path(__file__).resolve().parent.parent
HOME = "geryon/defaults.py"

INTERNAL = {
    "geryon/cluster/dsh.py": {"DEFAULT_CLAIM_TRIES", "DEFAULT_LOAD_TIMEOUT"},
    "geryon/cluster/members.py": {"DEFAULT_SETTLE"},
    "geryon/cluster/pick.py": {"DEFAULT_PENALTY_SECONDS", "DEFAULT_PICK_PENALTY"},
    "geryon/cluster/tlscerts.py": {"DEFAULT_CA_DAYS", "DEFAULT_HOST_DAYS"},
    "geryon/disks/checksum.py": {"DEFAULT_COMPACT_BYTES"},
    "geryon/disks/diskdb.py": {"DEFAULT_EDIT_TRIES"},
    "geryon/disks/filebatch.py": {"DEFAULT_BATCH_BODY", "DEFAULT_BATCH_BYTES", "DEFAULT_BATCH_FILE"},
    "geryon/disks/fsspecfile.py": {"DEFAULT_BLOCK_SIZE"},
    "geryon/disks/remotefile.py": {"DEFAULT_READ_BLOCK"},
    "geryon/disks/replicate.py": {"DEFAULT_PROBE_TIMEOUT", "DEFAULT_SYNC_TIMEOUT", "DEFAULT_SYNC_WORKERS"},
    "geryon/ingest/upload.py": {"DEFAULT_BATCH_MIN", "DEFAULT_HELD_BYTES", "DEFAULT_STOP_WAIT"},
    "geryon/mapreduce/jobfiles.py": {"DEFAULT_MAX_FOUND"},
    "geryon/mapreduce/jobstore.py": {"DEFAULT_FLUSH_EVERY", "DEFAULT_LOG_CAP"},
    "geryon/net/connection.py": {"DEFAULT_TIMEOUT"},
    "geryon/node/address.py": {"DEFAULT_ROUTE_PROBE"},
    "geryon/node/chunkops.py": {"DEFAULT_CLAIM_LEASE", "DEFAULT_PULL_TIMEOUT"},
    "geryon/node/chunkservice.py": {"DEFAULT_ARCHIVE_BLOCK", "DEFAULT_MAX_OP", "DEFAULT_SMALL_FILE", "DEFAULT_UPLOAD_BLOCK"},
    "geryon/node/cpuservice.py": {"DEFAULT_CLAIM_BODY", "DEFAULT_CLAIM_SECONDS", "DEFAULT_MAX_PENDING_CLAIMS",
                                  "DEFAULT_NOTIFY_INTERVAL"},
    "geryon/node/daemon.py": {"DEFAULT_MAX_BODY", "DEFAULT_UNREGISTER_TIMEOUT"},
    "geryon/node/jobservice.py": {"DEFAULT_DRIVER_HEARTBEAT", "DEFAULT_MAX_PACK"},
    "geryon/node/packcache.py": {"DEFAULT_PACK_CACHE", "DEFAULT_PACK_IDLE"},
    "geryon/node/virtualload.py": {"DEFAULT_DISPATCH_LOAD", "DEFAULT_MAX_DISPATCHES", "DEFAULT_VIRTUAL_SECONDS"},
    "geryon/taskfs/wire.py": {"DEFAULT_DEAD_AFTER", "DEFAULT_HEARTBEAT", "DEFAULT_RELEASE_TIMEOUT"},
    "geryon/ui/access.py": {"DEFAULT_LOGIN_TTL", "DEFAULT_MAX_SESSIONS", "DEFAULT_SESSION_TTL"},
    "geryon/ui/cluster.py": {"DEFAULT_CHECK_EVERY", "DEFAULT_CHECK_TIMEOUT", "DEFAULT_FORGET_DEAD", "DEFAULT_NODE_TIMEOUT"},
    "geryon/ui/jobview.py": {"DEFAULT_SLOWEST"},
    "geryon/ui/jobrecords.py": {"DEFAULT_JOBS_SHOWN"},
    "geryon/ui/server.py": {"DEFAULT_KEEPALIVE", "DEFAULT_LIVE_INTERVAL", "DEFAULT_MAX_LIVE", "DEFAULT_MAX_LOG"},
    "geryon/ui/svg.py": {"DEFAULT_WIDTH"},
}
"""Internal tuning constants left beside the code they tune (no CLI option shows them)."""


@functools.cache
def _trees() -> dict[str, ast.Module]:
    return {p.relative_to(REPO).as_posix(): ast.parse(p.read_text()) for p in sorted((REPO / "geryon").rglob("*.py"))}


def _defined(tree: ast.Module) -> list[str]:
    """DEFAULT_* names assigned at the top of a module."""
    out = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        out += [t.id for t in targets if isinstance(t, ast.Name) and t.id.startswith("DEFAULT_")]
    return out


def test_defaults_are_defined_in_the_defaults_module_or_listed_as_internal() -> None:
    elsewhere = {rel: set(_defined(tree)) for rel, tree in _trees().items() if rel != HOME and _defined(tree)}
    assert elsewhere == INTERNAL


def test_no_default_is_defined_twice() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for rel, tree in _trees().items():
        for name in _defined(tree):
            where[name].append(rel)
    assert {n: w for n, w in where.items() if len(w) > 1} == {}


def test_every_default_says_what_it_is() -> None:
    """Each constant of geryon.defaults has its one-line docstring after it (rq's habit)."""
    body = ast.parse((REPO / HOME).read_text()).body
    bare = [n.targets[0].id for n, after in zip(body, [*body[1:], None]) if isinstance(n, ast.Assign)
            and not (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant))]
    assert bare == []
    assert len([n for n in dir(geryon.defaults) if n.startswith("DEFAULT_")]) >= 25


def _cli_trees() -> dict[str, ast.Module]:
    return {rel: tree for rel, tree in _trees().items() if rel.startswith("geryon/cli/")}


def test_the_cli_takes_its_defaults_from_the_defaults_module() -> None:
    wrong = []
    for rel, tree in _cli_trees().items():
        wrong += [f"{rel}: defines {n}" for n in _defined(tree)]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith(("geryon.defaults", "registry")):
                wrong += [f"{rel}:{node.lineno}: {a.name} from {node.module}" for a in node.names
                          if a.name.startswith("DEFAULT_")]
    assert wrong == []


def test_no_cli_option_writes_its_own_number() -> None:
    """A click option's default is a name (or 0/1, a flag, a choice), never a number or size of its own."""
    literal = []
    for rel, tree in _cli_trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "option":
                for kw in node.keywords:
                    v = kw.value
                    if kw.arg == "default" and isinstance(v, ast.Constant) and not isinstance(v.value, bool) and (
                            isinstance(v.value, (int, float)) and v.value not in (0, 1)
                            or isinstance(v.value, str) and v.value[:1].isdigit()):
                        literal.append(f"{rel}:{node.lineno}: default={v.value!r}")
    assert literal == []
