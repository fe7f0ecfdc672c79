"""`geryon registry serve --ui`: the registry and its dashboard in one process."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.node.node_helpers import Cluster, wait_until
from tests.ui.ui_helpers import UiProc


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts."""


def test_registry_serve_ui_shows_the_nodes_that_register(tmp_path: Path, secret_file: Path) -> None:
    cluster = Cluster(tmp_path, secret_file)
    ui = UiProc(tmp_path, ["registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns", "--secret-file",
                           str(secret_file), "--ndb", str(cluster.ndb), "--heartbeat", "0.2", "--dead-after", "1",
                           "--ui", "--ui-listen", "127.0.0.1:0"],
                tag="registry-ui", secret_file=secret_file)
    try:
        assert ui.registry_line, "the registry did not say where it listens"
        cluster.registry_url = ui.registry_line.split("listening on", 1)[1].split()[0]
        assert ui.request("/cluster")[0] == 401
        session = ui.login(ui.login_url)
        cluster.start_node("alpha")

        def listed() -> bool:
            status, _, body = ui.request("/cluster", cookie=session)
            return status == 200 and b'data-node="alpha" data-state="live"' in body
        wait_until(listed, 60, interval=0.2)
        cluster.nodes["alpha"].kill()

        def dead() -> bool:
            return b'data-node="alpha" data-state="dead"' in ui.request("/cluster", cookie=session)[2]
        wait_until(dead, 60, interval=0.2)
    finally:
        ui.stop()
        cluster.stop()
