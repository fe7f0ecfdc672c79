"""The state file: atomic saves of persist entries, reloaded at start."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.client import RegistryClient
from registry.errors import RegistryError
from registry.state import load_state, save_state
from registry.store import Service


def test_round_trip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "d" / "state.json"
    assert load_state(path) == []
    entries = [(Service("p q", (("persist", "1"), ("x", "it's"))), "alice")]
    save_state(path, entries)
    assert load_state(path) == entries
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]   # no temporary left


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": 9, "services": []}',
                                  '{"format": 1, "services": [{"service": ["x"], "owner": "a"}]}'])
def test_corrupt_state_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(RegistryError, match="state"):
        load_state(path)


def test_server_saves_and_reloads_persist_entries(serve_thread: Callable[..., object], secret: bytes,
                                                  tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    server = serve_thread(secret=secret, state_path=state)
    with RegistryClient(server.url, secret=secret, owner="alice") as c:  # type: ignore[attr-defined]
        c.register("keep", {"persist": "1", "v": "1"})
        c.register("drop", {"v": "2"})
    doc = json.loads(state.read_text())
    assert [s["service"][0] for s in doc["services"]] == ["keep"]
    again = serve_thread(secret=secret, state_path=state)
    with RegistryClient(again.url, secret=secret, owner="alice") as c:  # type: ignore[attr-defined]
        assert [s.line() for s in c.index()] == ["keep persist 1 v 1"]
        c.unregister("keep")
    assert json.loads(state.read_text())["services"] == []


def test_watch_reports_what_changed_across_a_registry_restart(serve_thread: Callable[..., object],
                                                              secret: bytes, tmp_path: Path) -> None:
    from registry_helpers import free_port
    port = free_port()
    state = tmp_path / "state.json"
    first = serve_thread(secret=secret, port=port, state_path=state)
    with RegistryClient(first.url, secret=secret, owner="o") as gone:  # type: ignore[attr-defined]
        gone.register("stays", {"persist": "1", "v": "1"})            # persist: outlive `gone`
        gone.register("goes", {"persist": "1"})
    with RegistryClient(first.url, secret=secret, owner="o", backoff_cap=0.2) as c:  # type: ignore[attr-defined]
        with c.watch() as w:
            c.register("seen", {"a": "1"})
            assert w.get(3).line() == "add seen a 1"                        # type: ignore[union-attr]
            c.unregister("seen")
            assert w.get(3).line() == "remove seen a 1"                     # type: ignore[union-attr]
            first.__exit__(None, None, None)                               # type: ignore[attr-defined]
            doc = json.loads(state.read_text())
            doc["services"] = [s for s in doc["services"] if s["service"][0] == "stays"]
            doc["services"][0]["service"][1].append(["v2", "new"])
            state.write_text(json.dumps(doc))
            serve_thread(secret=secret, port=port, state_path=state)
            got = sorted(w.get(5).line() for _ in range(2))                # type: ignore[union-attr]
            assert got == ["remove goes persist 1", "update stays persist 1 v 1 v2 new"]
