"""The options every verb that talks to a cluster takes are defined once (`geryon.cli.common`)
and behave alike in every verb (issue 13 item 3: `--registry` was defined in 5 modules, the
secret option in 2, `--ndb` in 2, zeroconf interfaces in 1 — the registry verbs only)."""
from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from geryon.cli import main
from geryon.cli.common import (SharedOption, mdns_interfaces, ndb_option, registry_option, secret_option)

SHARED = {"--registry": "registry", "--secret-file": "secret", "--ndb": "ndb", "--mdns-interface": "mdns",
          "--local": "local"}

OWN_MEANING = {("geryon registry serve", "--ndb"): "where the registry keeps the cluster's disk names",
               ("geryon ui", "--local"): "no cluster: the dashboard shows this machine's jobs"}
"""(verb, option) spelt like a shared option on purpose with a meaning of its own."""


def _verbs(cmd: click.Command = main, path: str = "geryon") -> Iterator[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):                 # click's API: `geryon`'s group loads verbs lazily
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{path} {name}"
            yield from _verbs(sub, f"{path} {name}")
    else:
        yield path, cmd


def _options(cmd: click.Command) -> dict[str, click.Option]:
    return {o: p for p in cmd.params if isinstance(p, click.Option) for o in p.opts}


def test_every_verb_takes_the_shared_options_from_one_definition() -> None:
    wrong, seen = [], set()
    for verb, cmd in _verbs():
        opts = _options(cmd)
        for flag, shared in SHARED.items():
            p = opts.get(flag)
            if p is None or (verb, flag) in OWN_MEANING:
                continue
            seen.add(flag)
            if not (isinstance(p, SharedOption) and p.shared == shared):
                wrong.append(f"{verb} {flag}: its own definition")
        if "--registry" in opts and "--mdns-interface" not in opts:
            wrong.append(f"{verb}: --registry without --mdns-interface")
        if "--registry" in opts and "--secret-file" not in opts:
            wrong.append(f"{verb}: --registry without --secret-file")
    assert wrong == []
    assert seen == set(SHARED)          # the walk reached verbs with each of them


def test_the_exceptions_still_exist() -> None:
    verbs = dict(_verbs())
    for verb, flag in OWN_MEANING:
        assert flag in _options(verbs[verb]), (verb, flag)


@click.command()
@registry_option
@secret_option
@ndb_option
def _probe(registry_url: str | None, secret_file: str | None, ndb_file: str | None) -> None:
    click.echo(f"{registry_url} {secret_file} {ndb_file} {mdns_interfaces()}")


@pytest.mark.parametrize(("args", "env", "expected"), [
    ([], {}, "None None None None"),
    (["--registry", "http://h:1", "--secret-file", "/s f", "--ndb", "my ndb"], {},
     "http://h:1 /s f my ndb None"),
    ([], {"GERYON_REGISTRY": "tcp!h!2", "GERYON_SECRET_FILE": "/e", "GERYON_NDB": "/n"}, "tcp!h!2 /e /n None"),
    (["--mdns-interface", "10.1.2.3", "--mdns-interface", "::1"], {}, "None None None ('10.1.2.3', '::1')"),
    ([], {"GERYON_MDNS_INTERFACES": "10.1.2.3,10.4.5.6"}, "None None None ('10.1.2.3', '10.4.5.6')"),
    ([], {"GERYON_MDNS_INTERFACES": "10.1.2.3 10.4.5.6"}, "None None None ('10.1.2.3', '10.4.5.6')"),
    (["--mdns-interface", "10.9.9.9"], {"GERYON_MDNS_INTERFACES": "10.1.2.3"}, "None None None ('10.9.9.9',)"),
])
def test_the_shared_options_read_flags_then_environment(args: list[str], env: dict[str, str], expected: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GERYON_REGISTRY", "GERYON_SECRET_FILE", "GERYON_NDB", "GERYON_MDNS_INTERFACES"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(_probe, args, env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected


def test_outside_a_verb_the_interfaces_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GERYON_MDNS_INTERFACES", "10.1.2.3, 10.4.5.6")
    assert mdns_interfaces() == ("10.1.2.3", "10.4.5.6")
    monkeypatch.delenv("GERYON_MDNS_INTERFACES")
    assert mdns_interfaces() is None
