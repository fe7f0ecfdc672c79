"""The `fs` API Geryon builds on imports in a fresh venv on this Python (DESIGN: fs-next).

Upstream `fs` imports pkg_resources at import time, which fresh venvs of new Pythons lack;
the `fs-next` distribution must install and give a working `import fs` with nothing else.
This test needs the network (PyPI) and takes some seconds.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import venv


def test_fs_next_imports_in_a_fresh_venv(tmp_path: pathlib.Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    clean["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Fresh really means fresh: no fs, and not this interpreter's site-packages.
    probe = subprocess.run([str(python), "-c", "import sys, importlib.util; "
                            "print(importlib.util.find_spec('fs') is None, sys.prefix)"],
                           capture_output=True, text=True, env=clean, check=True)
    assert probe.stdout.split() == ["True", str(env_dir)], probe.stdout
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "fs-next"],
                             capture_output=True, text=True, env=clean, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run(
        [str(python), "-W", "error::DeprecationWarning", "-c",
         "import fs, fs.osfs, fs.memoryfs, fs.base, sys; "
         "m = fs.memoryfs.MemoryFS(); m.writetext('a', 'b'); assert m.readtext('a') == 'b'; "
         "o = fs.osfs.OSFS('.'); o.close(); print(fs.__file__.startswith(sys.prefix))"],
        capture_output=True, text=True, env=clean, cwd=tmp_path, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "True"
