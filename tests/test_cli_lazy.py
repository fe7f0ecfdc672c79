"""`geryon VERB` imports only what VERB needs (issue 12: a 200-file cluster load was start-up bound).

The `geryon` group imports a verb's module when the verb runs; the `geryon` package loads
its public names on first use; a registry client given a URL never imports zeroconf.
Each check runs a fresh interpreter and looks at what it imported.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys

import geryon
from geryon import cli

ENGINE = ("geryon.mapreduce.api", "geryon.mapreduce.engine", "geryon.mapreduce.maptask", "geryon.taskfs.client")


def _imported(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_verb_table_is_what_each_module_offers() -> None:
    for module, names in cli.COMMANDS.items():
        offered = importlib.import_module(f"geryon.cli.{module}").commands
        assert tuple(c.name for c in offered) == names, module
    assert sorted(cli.main.list_commands(None)) == sorted(n for names in cli.COMMANDS.values() for n in names)


def test_a_local_load_does_not_import_the_engine(tmp_path) -> None:
    src = tmp_path / "mail box"
    src.mkdir()
    (src / "a message.txt").write_text("From me\nhello\n")
    out = tmp_path / "disks here"
    loaded = _imported(
        "from geryon.cli import main\n"
        f"main(['load', '-q', '--app', 'x', '--to', {str(out)!r}, '--ndb', {str(tmp_path / 'n.ndb')!r},"
        f" {str(src)!r}], standalone_mode=False)")
    assert (out / "d0.x").is_dir() or any(out.iterdir())          # the load ran
    assert not loaded & set(ENGINE), sorted(loaded & set(ENGINE))
    assert "zeroconf" not in loaded and "geryon.cli.mapreduce" not in loaded


def test_a_registry_client_given_its_url_does_not_import_zeroconf() -> None:
    loaded = _imported("from registry.client import RegistryClient\n"
                       "RegistryClient('http://127.0.0.1:1', secret=b'x' * 32, owner='t')")
    assert "zeroconf" not in loaded and "registry.client" in loaded


def test_the_package_names_still_resolve() -> None:
    from geryon import Job, JobFailed, disk, params, run_job, session   # noqa: F401
    assert geryon.Job is Job and callable(run_job) and callable(disk)
    assert set(geryon.__all__) <= set(dir(geryon))
    assert all(getattr(geryon, name) is not None for name in geryon.__all__)
    loaded = _imported("import geryon")
    assert not loaded & set(ENGINE)
