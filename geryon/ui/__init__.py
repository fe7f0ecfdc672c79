"""The web dashboard: the cluster, the jobs and one job's timeline, read-only, in a browser.

`geryon ui` (and `geryon registry serve --ui`) serve these pages: server-rendered HTML with
SVG drawn here, a few lines of hand-written JavaScript for live updates (server-sent
events), nothing fetched from the internet. Access needs the cluster secret: a one-time
login token becomes a session cookie (`geryon.ui.access`).

Not here: the click verb (`geryon.cli.ui`), writing anything to the cluster or the job
history (the dashboard only reads).
"""
from __future__ import annotations

from geryon.defaults import DEFAULT_UI_PORT as DEFAULT_PORT  # noqa: F401 - geryon.ui.DEFAULT_PORT
