"""`geryon init --rotate`: a new secret, the old one kept as secret.old and accepted for a grace period."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from geryon.cli import main
from registry.errors import RegistryError
from registry.secretfile import OldSecret, load_old_secret, load_secret, old_secret_path, rotate_secret


def _secret_path() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "geryon" / "secret"


def test_rotate_keeps_the_old_secret_with_its_expiry() -> None:
    assert CliRunner().invoke(main, ["init"]).exit_code == 0
    path = _secret_path()
    first = load_secret(path)
    before = time.time()
    result = CliRunner().invoke(main, ["init", "--rotate", "--grace", "10m"])
    assert result.exit_code == 0, result.output
    assert "accepted until" in result.output and "secret.old" in result.output
    old = load_old_secret(path)
    assert old is not None and old.secret == first and load_secret(path) != first
    assert before + 600 <= old.expires <= time.time() + 600
    assert old.accepted(old.expires - 1) and not old.accepted(old.expires)
    for p in (path, old_secret_path(path)):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_grace_kept_is_never_shorter_than_asked_and_the_file_says_what_rotate_said(tmp_path: Path) -> None:
    # The file keeps milliseconds: 1005.0004 written as 1005.000 was a grace 0.4 ms short,
    # and rotate's answer disagreed with the file's.
    path = tmp_path / "secret"
    assert CliRunner().invoke(main, ["init", "--secret-file", str(path)]).exit_code == 0
    said = rotate_secret(path, grace=5, now=1000.0004)
    assert said.expires >= 1005.0004 and said == load_old_secret(path)


def test_rotating_twice_keeps_only_the_last_old_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    assert CliRunner().invoke(main, ["init", "--secret-file", str(path)]).exit_code == 0
    rotate_secret(path, grace=5, now=1000.0)
    second = load_secret(path)
    assert rotate_secret(path, grace=5, now=2000.0) == OldSecret(second, 2005.0)
    assert load_old_secret(path) == OldSecret(second, 2005.0)


def test_rotation_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    result = CliRunner().invoke(main, ["init", "--rotate", "--secret-file", str(missing)])
    assert result.exit_code == 1 and result.output.startswith("geryon: ") and str(missing) in result.output
    result = CliRunner().invoke(main, ["init", "--rotate", "--force"])
    assert result.exit_code == 2 and "give one" in result.output
    result = CliRunner().invoke(main, ["init", "--rotate", "--grace", "soon"])
    assert result.exit_code == 2 and "not a duration" in result.output
    path = tmp_path / "secret"
    CliRunner().invoke(main, ["init", "--secret-file", str(path)])
    old_secret_path(path).write_text("zz\n")
    old_secret_path(path).chmod(0o600)
    with pytest.raises(RegistryError, match="malformed old secret"):
        load_old_secret(path)
    old_secret_path(path).chmod(0o644)
    with pytest.raises(RegistryError, match="accessible by others"):
        load_old_secret(path)


def test_force_leaves_no_previous_secret_accepted(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    assert CliRunner().invoke(main, ["init", "--secret-file", str(path)]).exit_code == 0
    rotate_secret(path, grace=3600)
    assert load_old_secret(path) is not None
    result = CliRunner().invoke(main, ["init", "--force", "--secret-file", str(path)])
    assert result.exit_code == 0, result.output
    assert load_old_secret(path) is None and not old_secret_path(path).exists()
