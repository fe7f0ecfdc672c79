"""`geryon ndb query`: what Inferno's ndb/query prints, on real Inferno files and ours."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from geryon.cli import main

DATA = Path(__file__).parent / "data"


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    env = {"GERYON_NDB": None, **(env or {})}
    return CliRunner().invoke(main, ["ndb", "query", *args], env=env)


# The expected answers in tests/ndb/data/README.md.
@pytest.mark.parametrize(
    ("args", "answer"),
    [
        (["-f", "inferno", "tcp", "rstyx", "port"], "6668"),
        (["-f", "inferno", "tcp", "registry", "port"], "6675"),
        (["-f", "local", "infernosite", "", "registry"], "your_registry_server"),
        (["-a", "-f", "common", "protocol", "tcp", "ipv4proto"], "6"),
    ],
)
def test_inferno_reference_answers(args: list[str], answer: str) -> None:
    args[args.index("-f") + 1] = str(DATA / args[args.index("-f") + 1])
    result = run(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (0, answer + "\n", "")


def test_geryon_cluster_file() -> None:
    cluster = str(DATA / "cluster")
    assert run("-f", cluster, "name", "d0.mbox", "master").stdout == "host0!chunk0\n"
    assert run("-f", cluster, "name", "d1.mbox", "replica").stdout == "d1.replica\n"
    assert run("-f", cluster, "kfs", "", "master").stdout == "host0!chunk0\n"
    assert run("-a", "-f", cluster, "kfs", "", "master").stdout == "host0!chunk0\nhost1!chunk1\n"


def test_attr_value_prints_the_entry_on_one_line() -> None:
    cluster = str(DATA / "cluster")
    result = run("-f", cluster, "name", "d1.mbox")
    assert result.exit_code == 0
    assert result.stdout == "name=d1.mbox kfs='' master=host1!chunk1 replica=d1.replica\n"
    result = run("-f", str(DATA / "inferno"), "port", "6668")
    assert result.stdout == "tcp=rstyx port=6668\n"


def test_attr_alone_prints_entries_having_it() -> None:
    cluster = str(DATA / "cluster")
    assert run("-f", cluster, "replica").stdout == "name=d0.mbox kfs='' master=host0!chunk0 replica=d0.replica\n"
    result = run("-a", "-f", cluster, "kfs")
    assert result.stdout.splitlines() == [
        "name=d0.mbox kfs='' master=host0!chunk0 replica=d0.replica",
        "name=d1.mbox kfs='' master=host1!chunk1 replica=d1.replica",
    ]
    assert len(run("-a", "-f", str(DATA / "inferno"), "udp").stdout.splitlines()) == 2


def test_values_are_printed_with_percent_q(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_text("k=1 v='two words'\n\tv=''\n")
    assert run("-a", "-f", str(path), "k", "1", "v").stdout == "'two words'\n''\n"


def test_same_line_first_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_text("sys=alpha ip=10.0.0.1\n\tdom=alpha.example ip=10.0.0.2\n")
    assert run("-f", str(path), "dom", "alpha.example", "ip").stdout == "10.0.0.2\n"
    assert run("-a", "-f", str(path), "dom", "alpha.example", "ip").stdout == "10.0.0.2\n10.0.0.1\n"


def test_no_match_prints_nothing_and_exits_1() -> None:
    for args in (["name", "d9.mbox"], ["name", "d0.mbox", "nosuch"], ["nosuch"], ["-a", "nosuch"]):
        result = run("-f", str(DATA / "cluster"), *args)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", "")


def test_malformed_file_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    path.write_text("name=d0.mbox kfs\n\tmaster='host0!chunk0\n")
    result = run("-f", str(path), "name", "d0.mbox", "master")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"geryon: {path}:2: missing quote\n"


def test_missing_file_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "nothere"
    result = run("-f", str(path), "name")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"geryon: can't open {path}: No such file or directory\n"


def test_default_file_is_geryon_ndb_then_ndb_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("name", "d0.mbox", "master", env={"GERYON_NDB": str(DATA / "cluster")}).stdout == "host0!chunk0\n"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ndb").mkdir()
    shutil.copy(DATA / "cluster", tmp_path / "ndb" / "cluster")
    result = run("name", "d1.mbox", "master")
    assert (result.exit_code, result.stdout) == (0, "host1!chunk1\n")
    # -f wins over $GERYON_NDB.
    result = run("-f", "ndb/cluster", "name", "d1.mbox", "master", env={"GERYON_NDB": "nothere"})
    assert result.stdout == "host1!chunk1\n"
    result = run("name", env={"GERYON_NDB": "nothere"})
    assert result.stderr == "geryon: can't open nothere: No such file or directory\n"


def test_usage_errors_exit_2() -> None:
    assert run().exit_code == 2
    assert run("a", "b", "c", "d").exit_code == 2
