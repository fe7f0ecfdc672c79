"""The installed distribution declares what other programs discover: console script, fs opener."""
from __future__ import annotations

from importlib.metadata import entry_points

import fs.opener


def test_console_script_is_the_cli():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "geryon"]
    assert script.value == "geryon.cli:main"


def test_fs_finds_the_geryon_opener_by_its_entry_point():
    from geryon.disks.remote import GeryonOpener

    assert isinstance(fs.opener.registry.get_opener("geryon"), GeryonOpener)


def test_fsspec_finds_the_geryon_filesystem_by_its_entry_point():
    import fsspec

    from geryon.disks.fsspecfs import GeryonFileSystem

    assert fsspec.get_filesystem_class("geryon") is GeryonFileSystem
