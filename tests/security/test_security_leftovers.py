"""Crash leftovers (issue 11, item 9): staging of killed loads and temp files of a killed
registry are swept on the next start; a live owner's staging is never touched."""
from __future__ import annotations

from pathlib import Path

from geryon.ingest.load import STAGING_PREFIX, load
from geryon.ingest.staging import OwnedDir
from registry.state import StateLock


def test_a_load_sweeps_what_killed_loads_left_but_not_a_live_one(tmp_path: Path) -> None:
    to = tmp_path / "disks"
    to.mkdir()
    dead = to / f"{STAGING_PREFIX}x-99999-0badf00d"          # a killed load: lock file free
    (dead / "d0.x").mkdir(parents=True)
    (dead / "d0.x" / "f").write_bytes(b"half" * 1000)
    (to / f"{dead.name}.lock").write_text("")
    legacy = to / f"{STAGING_PREFIX}x-deadbeef"              # an older Geryon's, no lock at all
    legacy.mkdir()
    live = OwnedDir.make(str(to), f"{STAGING_PREFIX}other-")
    try:
        src = tmp_path / "src"
        src.mkdir()
        (src / "a.txt").write_text("one two\n")
        load([str(src)], "app", to=str(to), ndb_file=str(tmp_path / "ndb"), chunk_size=1 << 20)
        left = sorted(p.name for p in to.iterdir() if p.name.startswith(STAGING_PREFIX))
        assert left == sorted([Path(live.path).name, Path(live.path).name + ".lock"])
        assert (to / "d0.app" / "a.txt").read_text() == "one two\n"
    finally:
        live.close()
    assert not any(p.name.startswith(STAGING_PREFIX) for p in to.iterdir())


def test_a_registry_start_removes_temp_state_files_a_killed_one_left(tmp_path: Path) -> None:
    state = tmp_path / "regstate.json"
    state.write_text('{"format": 1, "services": []}')
    for tmp in ("k1l2m3n4", "zz99yy88"):
        (tmp_path / f".regstate.json.{tmp}").write_text('{"format": 1, "serv')
    lock = StateLock.take(state)
    assert lock is not None
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == [".regstate.json.lock", "regstate.json"]
        (tmp_path / ".regstate.json.live0000").write_text("")       # a live registry's: kept
        assert StateLock.take(state) is None
        assert (tmp_path / ".regstate.json.live0000").exists()
    finally:
        lock.release()
