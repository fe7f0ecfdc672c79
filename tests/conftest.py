"""Fixtures shared by every test package: the repository's paths and a clean CLI runner."""
from __future__ import annotations

import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# -- markers (pyproject's `markers`): every test gets exactly one kind, by its file ------------------

UNIT_FILES = frozenset("""
    data/test_data_checksum.py data/test_data_copies.py data/test_data_fs_contract.py data/test_data_local_failover.py
    data/test_data_readers.py data/test_data_sumsjournal.py data/test_data_warc.py
    engine/test_engine_attempt.py engine/test_engine_driver_loop.py engine/test_engine_chunk.py engine/test_engine_inputs.py
    engine/test_engine_jobfiles.py engine/test_engine_jobpack.py engine/test_engine_jobstore.py
    engine/test_engine_outputs.py engine/test_engine_progress.py engine/test_engine_sortbuffer_batches.py
    engine/test_engine_units.py
    ndb/test_ndb_cli.py ndb/test_ndb_database.py ndb/test_ndb_format.py ndb/test_ndb_limits.py
    ndb/test_ndb_parse.py ndb/test_ndb_search.py
    node/test_node_packcache.py node/test_node_pick.py node/test_node_trash.py
    registry/test_registry_index.py registry/test_registry_loopthread.py registry/test_registry_state.py registry/test_registry_store.py
    registry/test_registry_text.py
    security/test_security_leftovers.py
    shell/test_block.py shell/test_cli.py shell/test_filters.py shell/test_imports.py shell/test_partition.py
    taskfs/test_taskfs_plan.py ui/test_ui_pages.py test_cli_options.py test_defaults_module.py test_entry_points.py test_errors_tree.py test_layering.py
    test_vocabulary.py test_net_wire.py
""".split())
"""Test files that start no server, node or worker process (measured: the whole set runs in about a
minute on a loaded 2-core machine); every other file is `integration` unless named below."""

KIND_OF_FILE = {"node/test_node_netns.py": "netns", "node/test_node_address.py": "netns",
                "taskfs/test_taskfs_fuse.py": "fuse"}
KIND_OF_DIR = {"faults": "faults"}


def kind_of(path: pathlib.Path) -> str:
    """The marker of the tests in `path` (a file under tests/)."""
    rel = path.resolve().relative_to(REPO / "tests").as_posix()
    if rel in KIND_OF_FILE:
        return KIND_OF_FILE[rel]
    if rel.split("/")[0] in KIND_OF_DIR:
        return KIND_OF_DIR[rel.split("/")[0]]
    return "unit" if rel in UNIT_FILES else "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(getattr(pytest.mark, kind_of(item.path)))


@pytest.fixture
def examples() -> pathlib.Path:
    return EXAMPLES


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never see the developer's own registry, secret or ndb settings, nor add to their job history,
    nor server identities an earlier test learnt.

    Each test has its own fresh config directory, so a secret created on first use (or by
    `geryon init`) lands there, never in the developer's ~/.config.
    """
    for var in ("GERYON_REGISTRY", "GERYON_NDB", "GERYON_SECRET_FILE", "GERYON_TLS_CERT", "GERYON_TLS_KEY",
                "GERYON_TLS_CA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("GERYON_JOBS_DIR", str(tmp_path_factory.getbasetemp() / "jobs"))
    # Server identities learnt by an earlier test: its ports are free for this test's servers,
    # which are other servers (a stdlib caller signing for the old one is refused, not retried).
    from registry.signer import IDENTITIES

    IDENTITIES.clear()


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    """Fail the test if it leaves a thread running (packages opt in with an autouse wrapper)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.05)
    pytest.fail(f"leaked threads: {extra}")


@pytest.fixture
def secret_file(tmp_path: pathlib.Path) -> pathlib.Path:
    """A fresh cluster secret (mode 0600) in the test's directory."""
    from registry.auth import create_secret

    path = tmp_path / "secret"
    create_secret(path)
    return path


@pytest.fixture
def secret(secret_file: pathlib.Path) -> bytes:
    from registry.auth import load_secret

    return load_secret(secret_file)


@pytest.fixture(scope="session")
def stdlib_corpus(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., pathlib.Path]:
    """Make a directory disk of Python's own library sources: real text, nested folders.

    `make(count, max_bytes=None)` copies the first `count` UTF-8 `.py` files (in path order,
    none larger than `max_bytes`) into a fresh directory and returns it.
    """
    root = pathlib.Path(os.path.dirname(os.__file__))
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py") if "site-packages" not in p.parts)

    def make(count: int, max_bytes: int | None = None) -> pathlib.Path:
        disk = tmp_path_factory.mktemp("corpus") / "stdlib"
        chosen = 0
        for rel in names:
            data = (root / rel).read_bytes()
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if max_bytes is not None and len(data) > max_bytes:
                continue
            dst = disk / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            chosen += 1
            if chosen == count:
                break
        return disk

    return make
