"""Who may see the dashboard: every attack on its access is played against a real `geryon ui`."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from geryon.ui.access import Access, AccessRefused
from geryon.ui.server import audience_of, login_url
from tests.ui.ui_helpers import GERYON, UiProc

PATHS = ["/", "/cluster", "/jobs", "/jobs/some-job", "/jobs/some-job/logs/m0.a0", "/events/jobs",
         "/events/cluster", "/events/job/some-job", "/static/ui.js", "/static/ui.css"]


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from registry.auth import create_secret

    path = tmp_path_factory.mktemp("ui-secret") / "secret"
    create_secret(path)
    return path


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory, secret_file: Path) -> Iterator[UiProc]:
    """One `geryon ui` for the module (tokens are minted per test with the secret)."""
    tmp_path = tmp_path_factory.mktemp("ui-access")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    ui = UiProc(tmp_path, ["ui", "--local", "--listen", ":0", "--secret-file", str(secret_file),
                           "--jobs-dir", str(jobs)], secret_file=secret_file)
    ui.jobs = jobs  # type: ignore[attr-defined]
    try:
        yield ui
    finally:
        ui.stop()


def test_listens_on_loopback_by_default(dashboard: UiProc) -> None:
    from geryon.cli.ui import DEFAULT_LISTEN, parse_listen

    assert dashboard.base.startswith("http://127.0.0.1:")       # `--listen :0`: no host given
    assert parse_listen(DEFAULT_LISTEN)[0] == "127.0.0.1"


def test_nothing_is_served_without_a_login(dashboard: UiProc) -> None:
    for path in PATHS:
        status, _, body = dashboard.request(path)
        assert status == 401, (path, status)
        assert b"needs a login" in body
        assert b"/static/" not in body                          # it would be refused them too
    status, _, _ = dashboard.request("/login")                  # no token
    assert status == 403


def test_the_printed_login_token_opens_one_session_once(dashboard: UiProc) -> None:
    status, headers, _ = dashboard.request(dashboard.login_url.split(dashboard.base, 1)[1])
    assert status == 303 and headers["location"] == "/cluster"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    session = cookie.split("=", 1)[1].split(";", 1)[0]
    for path in ("/cluster", "/jobs", "/static/ui.js"):
        assert dashboard.request(path, cookie=session)[0] == 200, path
    status, _, body = dashboard.request(dashboard.login_url.split(dashboard.base, 1)[1])   # reused
    assert status == 403 and b"already used" in body
    assert "set-cookie" not in dashboard.request(dashboard.login_url.split(dashboard.base, 1)[1])[1]


def test_forged_and_foreign_tokens_are_refused(dashboard: UiProc, secret_file: Path, tmp_path: Path) -> None:
    from registry.auth import create_secret, load_secret

    token = dashboard.mint().split("token=", 1)[1]
    nonce, expiry, mac = token.split(".")
    forged = [f"{nonce}.{expiry}.{mac[:-2]}AA", f"{nonce}.{int(expiry) + 3600}.{mac}", "x" * 5000, "a.b.c", ""]
    other = tmp_path / "other-secret"
    create_secret(other)
    forged.append(Access(load_secret(other), audience_of(dashboard.port)).mint())     # another cluster's
    forged.append(Access(load_secret(secret_file), audience_of(dashboard.port + 1)).mint())  # another dashboard's
    for bad in forged:
        status, headers, _ = dashboard.request(f"/login?token={bad}")
        assert status == 403, bad
        assert "set-cookie" not in headers
    assert dashboard.login(f"{dashboard.base}/login?token={token}") != ""   # the real one still works, once


def test_a_login_url_minted_with_the_secret_opens_a_session(dashboard: UiProc, secret_file: Path) -> None:
    minted = subprocess.run([*GERYON, "ui", "--secret-file", str(secret_file), "--login-url", dashboard.base],
                            capture_output=True, text=True, timeout=60)
    assert minted.returncode == 0, minted.stderr
    session = dashboard.login(minted.stdout.strip())
    assert dashboard.request("/jobs", cookie=session)[0] == 200


def test_forged_cookies_are_refused(dashboard: UiProc) -> None:
    real = dashboard.login()
    for bad in ("", "forged", real[:-1] + ("A" if real[-1] != "A" else "B"), "x" * 5000):
        assert dashboard.request("/jobs", cookie=bad)[0] == 401, bad
    # the right value under another dashboard's cookie name is not a session here
    status, _, _ = dashboard.request("/jobs", headers={"Cookie": f"geryon-ui-{dashboard.port + 1}={real}"})
    assert status == 401
    assert dashboard.request("/jobs", cookie=real)[0] == 200


def test_cross_site_requests_are_refused(dashboard: UiProc) -> None:
    session = dashboard.login()
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{dashboard.port + 1}"},
                    {"Origin": "null"}):
        status, _, body = dashboard.request("/jobs", headers=headers, cookie=session)
        assert status == 403 and b"cross-site" in body, headers
    assert dashboard.request("/login?token=" + "x", headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                    {"Origin": dashboard.base}):
        assert dashboard.request("/jobs", headers=headers, cookie=session)[0] == 200, headers


def test_oversize_and_writing_requests_are_refused(dashboard: UiProc) -> None:
    session = dashboard.login()
    assert dashboard.request("/jobs", headers={"X-Big": "x" * 20000}, cookie=session)[0] in (400, 431)
    assert dashboard.request("/jobs" + "?q=" + "x" * 20000, cookie=session)[0] in (400, 414)
    assert dashboard.request("/jobs", headers={f"X-H{i}": "v" for i in range(200)}, cookie=session)[0] in (400, 431)
    assert dashboard.request("/jobs", method="POST", body=b"x" * 100, cookie=session)[0] == 405
    assert dashboard.request("/jobs", method="GET", body=b"x" * (1 << 20), cookie=session)[0] == 413
    assert dashboard.request("/login", method="POST", body=b"token=x")[0] == 405
    assert dashboard.request("/jobs", cookie=session)[0] == 200          # still serving


def test_answers_forbid_framing_sniffing_and_foreign_scripts(dashboard: UiProc) -> None:
    session = dashboard.login()
    for status, headers, _ in (dashboard.request("/jobs", cookie=session), dashboard.request("/jobs")):
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"


def test_tokens_expire_and_sessions_end() -> None:
    now = [1000.0]
    access = Access(b"s" * 32, audience_of(1), login_ttl=60, session_ttl=120, clock=lambda: now[0])
    token = access.mint()
    now[0] += 61
    with pytest.raises(AccessRefused, match="expired"):
        access.redeem(token)
    session = access.redeem(access.mint())
    assert access.admits(session)
    now[0] += 121
    assert not access.admits(session)
    assert login_url("http://h:1/", "a.b.c") == "http://h:1/login?token=a.b.c"


def test_ui_cli_bad_input_is_one_line_and_non_zero(tmp_path: Path, secret_file: Path) -> None:
    bad = subprocess.run([*GERYON, "ui", "--secret-file", str(secret_file), "--listen", "nonsense"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not HOST:PORT" in bad.stderr
    noport = subprocess.run([*GERYON, "ui", "--secret-file", str(secret_file), "--login-url", "http://somehost"],
                            capture_output=True, text=True, timeout=60)
    assert noport.returncode == 1
    assert noport.stderr.strip().splitlines() == ["geryon: 'http://somehost': give the dashboard's URL with its port "
                                                  "(http://HOST:PORT)"]
    missing = subprocess.run([*GERYON, "ui", "--secret-file", str(tmp_path / "none"), "--local"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr


def test_an_attempts_stderr_is_served_by_its_attempt_id(dashboard: UiProc) -> None:
    """/jobs/JOB/logs/m0.a1 serves that attempt's stderr; a name that is no attempt id, or an attempt
    without a log, is a 404 naming it (the id is read by `AttemptId.parse`, as it was written)."""
    from geryon.mapreduce.jobstore import JobStore

    store = JobStore(str(dashboard.jobs))  # type: ignore[attr-defined]
    record = store.begin("logs-job", {"name": "logs-job", "mode": "local"})
    record.attempt_started("m0", 1, "local!0")
    record.stderr("m0", 1, b"the second attempt's stderr\n")
    record.attempt_ended("m0", 1, "failed", error="boom")
    record.stderr("r0", 0, b"a reducer's\n")
    record.close()
    session = dashboard.login()
    status, _, body = dashboard.request("/jobs/logs-job/logs/m0.a1", cookie=session)
    assert (status, body) == (200, b"the second attempt's stderr\n")
    assert dashboard.request("/jobs/logs-job/logs/r0.a0", cookie=session)[:3:2] == (200, b"a reducer's\n")
    for name in ("m0.a0", "m0.a", "m0", "x0.a1", "m0.a1.stderr"):
        status, _, body = dashboard.request(f"/jobs/logs-job/logs/{name}", cookie=session)
        assert status == 404 and b"has no stderr" in body, (name, status, body)
