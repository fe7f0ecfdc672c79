"""The trash thread of `geryon.node.trash` (unit): a batch that survives its deletion without an
error (Python 3.10's path check, a file the node cannot see) ends the round with a warning, not a
thread spinning a core forever with `wait()` never true."""
from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from geryon.node import trash as trash_mod
from geryon.node.trash import TRASH_NAME, Trash


def _chunk(root: Path) -> SimpleNamespace:
    return SimpleNamespace(fs=SimpleNamespace(root_path=str(root)), lock=threading.Lock(), name="c7")


def test_a_chunk_is_emptied_in_the_background(tmp_path):
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "part 0").write_text("x")
    (tmp_path / "top.txt").write_text("y")
    t = Trash()
    assert t.empty(_chunk(tmp_path)) == 2
    assert t.wait(60)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_batch_that_survives_its_deletion_ends_the_round_with_a_warning(tmp_path, monkeypatch, caplog):
    (tmp_path / "kept by the disk").mkdir()
    monkeypatch.setattr(trash_mod, "_remove_entry", lambda fd, path, name: None)
    t = Trash()
    t.empty(_chunk(tmp_path))
    assert t.wait(60), "the trash thread kept going round a batch it cannot delete"
    assert t.pending() == []
    assert (tmp_path / TRASH_NAME).is_dir()          # left for the next start's sweep
    assert any("still holds" in r.getMessage() for r in caplog.records)
