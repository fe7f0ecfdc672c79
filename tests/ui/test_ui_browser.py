"""The dashboard in a real browser: a registry, three nodes, a job with a failing attempt, headless Chromium
and headless Firefox (the same walk in each).

One test walks the whole story in order (each step needs the one before): the cluster page
lists the three nodes; while the job runs its page's progress changes with no reload;
the finished job's timeline has one bar per recorded attempt, the failed one marked
failed; a killed node shows as dead without a reload; a browser without the login gets
nothing. Screenshots of every page are saved under the test's tmp_path.
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.fault_helpers import FaultCluster, job_record, wait_job, write_corpus
from tests.node.node_helpers import wait_until
from tests.ui.browser import Browser
from tests.ui.firefox import FirefoxBrowser
from tests.ui.ui_helpers import GERYON, UiProc

JOB_PY = '''"""Word count, slow enough to watch; the worker of m0's first attempt dies (a fault: retried)."""
import os
import sys
import time
from collections import Counter

MARK = {mark!r}


def map(key, value):
    if os.environ.get("GERYON_TASK", "").split(".")[0] == "m0" and not os.path.exists(MARK):
        open(MARK, "w").close()
        print("m0 fails on purpose, once", file=sys.stderr, flush=True)
        os._exit(3)
    time.sleep({delay})
    return Counter(value.split())


def reduce(key, values):
    return sum(values)


combine = reduce
'''

WAIT = 120.0


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts."""


@pytest.fixture
def cluster(tmp_path: Path, secret_file: Path) -> Iterator[FaultCluster]:
    c = FaultCluster(tmp_path, secret_file, write_corpus(Path("."), disks=3, files=8, lines=40))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def dashboard(cluster: FaultCluster, tmp_path: Path, secret_file: Path) -> Iterator[UiProc]:
    ui = UiProc(tmp_path, ["ui", "--listen", "127.0.0.1:0", "--registry", cluster.registry_url,
                           "--secret-file", str(secret_file), "--jobs-dir", str(cluster.jobs_dir)],
                secret_file=secret_file)
    try:
        yield ui
    finally:
        ui.stop()


@pytest.fixture(params=["chromium", "firefox"])
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path) if request.param == "chromium" else FirefoxBrowser(tmp_path)
    try:
        yield b
    finally:
        b.close()


def _count(browser: Browser, selector: str) -> int:
    return int(browser.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))


def test_the_dashboard_in_a_browser(cluster: FaultCluster, dashboard: UiProc, browser: Browser,
                                    tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    # Without the login, nothing: the page is a refusal and so is every fetch.
    browser.goto(f"{dashboard.base}/cluster")
    assert "needs a login" in browser.evaluate("document.body.innerText")
    assert _count(browser, "tr.node") == 0
    browser.screenshot(shots / "refused.png")

    browser.goto(dashboard.login_url)
    browser.wait_for("location.pathname === '/cluster'", WAIT)
    assert browser.status_of("/jobs") == 200
    browser.wait_for("document.querySelectorAll('tr.node[data-state=live]').length === 3", WAIT)
    assert sorted(browser.evaluate("[...document.querySelectorAll('tr.node')].map(r => r.dataset.node)")) == \
        ["n0", "n1", "n2"]
    browser.wait_for("document.querySelectorAll('tr[data-disk$=\".t\"]').length === 3", WAIT)
    assert _count(browser, "tr[data-disk$='.r']") == 0                   # replicas: in their master's row
    assert _count(browser, "tr[data-disk='d0.t'] li.copy[data-live=true]") == 2
    browser.screenshot(shots / "cluster.png")

    # A job: it appears on the jobs page by itself, then its page changes while it runs.
    browser.goto(f"{dashboard.base}/jobs")
    job_dir = tmp_path / "uijob"
    job_dir.mkdir()
    (job_dir / "wc.py").write_text(JOB_PY.format(mark=str(tmp_path / "m0-failed-once"), delay=0.6))
    argv = [*GERYON, "mapreduce", "-q", "--name", "wc", "-R", "3", "--out", str(tmp_path / "out"),
            "--lease", "2", str(job_dir / "wc.py"), str(job_dir / "wc.py"), *sorted(cluster.corpus)]
    job = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=cluster.job_env(), cwd=tmp_path)
    try:
        browser.evaluate("window.__notReloaded = true")
        job_id = browser.wait_for("(document.querySelector('tr.job') || {dataset: {}}).dataset.job", WAIT)
        assert browser.evaluate("window.__notReloaded === true")        # came by the live stream
        browser.goto(f"{dashboard.base}/jobs/{job_id}")
        browser.evaluate("window.__notReloaded = true")
        first = browser.evaluate("document.getElementById('progress').innerText")
        browser.wait_for(f"document.getElementById('progress').innerText !== {json.dumps(first)}", WAIT)
        assert browser.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating"
        browser.screenshot(shots / "job-running.png")
        code, _, err = wait_job(job, timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert code == 0, err[-3000:]
    browser.wait_for("document.querySelector('#summary [data-state]').dataset.state === 'succeeded'", WAIT)
    assert browser.evaluate("window.__notReloaded === true")

    # The finished job, freshly loaded: a bar per recorded attempt, the failed attempt marked failed.
    record = job_record(cluster.jobs_dir)
    assert record["id"] == job_id
    browser.goto(f"{dashboard.base}/jobs/{job_id}")
    bars = _count(browser, "svg.timeline rect.bar[data-task]")
    assert bars == len(record["attempts"]) and bars > 0
    failed = [a for a in record["attempts"] if a["state"] == "failed"]
    assert [(a["task"], a["attempt"]) for a in failed] == [("m0", 0)], failed
    assert browser.evaluate("document.querySelector('rect.bar[data-task=m0][data-attempt=\"0\"]').dataset.state") == \
        "failed"
    assert _count(browser, "rect.bar[data-state=failed]") == 1
    assert browser.evaluate("getComputedStyle(document.querySelector('rect.bar[data-state=failed]')).fill") != \
        browser.evaluate("getComputedStyle(document.querySelector('rect.bar[data-state=done]')).fill")
    failure = browser.evaluate("document.querySelector('.failure[data-task=m0]').innerText")
    assert "m0 fails on purpose, once" in failure                      # the stderr tail
    log_href = browser.evaluate("document.querySelector('.failure[data-task=m0] a').getAttribute('href')")
    assert browser.status_of(log_href) == 200
    assert _count(browser, "svg.skew rect.sbar") == 3                   # bytes per reducer
    browser.screenshot(shots / "job.png")
    browser.screenshot(shots / "job-timeline.png", "main", scale=0.6)   # the README's picture
    browser.goto(f"{dashboard.base}/jobs")
    browser.screenshot(shots / "jobs.png")

    # A node killed: the open cluster page shows it dead, with no reload.
    browser.goto(f"{dashboard.base}/cluster")
    browser.wait_for("document.querySelectorAll('tr.node[data-state=live]').length === 3", WAIT)
    browser.evaluate("window.__notReloaded = true")
    cluster.nodes["n2"].kill()
    browser.wait_for("document.querySelector('tr.node[data-node=n2]').dataset.state === 'dead'", WAIT)
    assert browser.evaluate("window.__notReloaded === true")
    assert "dead since" in browser.evaluate("document.querySelector('tr.node[data-node=n2]').innerText")
    assert _count(browser, "tr.node[data-state=live]") == 2
    browser.screenshot(shots / "cluster-dead.png")

    # Another browser profile without the login still gets nothing.
    wait_until(lambda: all(p.exists() for p in (shots / "cluster.png", shots / "job.png")), 5)
    status = browser.loop.run_until_complete(_status_without_cookie(f"{dashboard.base}/jobs/{job_id}"))
    assert status == 401
    browser.evaluate("1")                                               # collect events still in flight
    assert browser.js_errors == [], browser.js_errors                   # no page threw, in either browser


async def _status_without_cookie(url: str) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False) as resp:
        return resp.status
