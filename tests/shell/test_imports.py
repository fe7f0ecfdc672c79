"""`shell` is stdlib only: importing it in a fresh interpreter loads nothing of ours."""
from __future__ import annotations

import subprocess
import sys


def test_shell_imports_nothing_else_of_ours() -> None:
    code = (
        "import sys, importlib\n"
        "for m in ['shell', 'shell.agg', 'shell.block', 'shell.errors', 'shell.idx',\n"
        "          'shell.intermediate', 'shell.partition', 'shell.stream']:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "             ('geryon', 'ndb', 'registry', 'click', 'fs', 'aiohttp', 'msgpack'))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout == "[]\n"
