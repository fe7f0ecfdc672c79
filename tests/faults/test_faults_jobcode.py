"""Code and parameters that travel: a cluster job ships its scripts and the modules they import
(never the directory's dotfiles or old results), reads its -D parameters and --cmdenv
variables on every node, and a module the nodes lack fails the job once, with the traceback."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.faults.fault_helpers import GERYON, FaultCluster, attempts, job_events, job_record

JOB = '''
import os
import geryon
from helper import words
from pkg.sub import tag

def map(key, value):
    n = int(geryon.param("minlen"))
    return [(tag(w) + os.environ.get("SUFFIX", "<unset>"), 1) for w in words(value) if len(w) >= n]

def reduce(key, values):
    return sum(values)
'''


def _home(c: FaultCluster) -> Path:
    home = c.tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY")
    (home / "old.out").mkdir()
    (home / "old.out" / "wc.part0").write_text("old\t1\n")
    (home / "map.py").write_text(JOB)
    (home / "helper.py").write_text("def words(text):\n    return text.split()\n")
    (home / "pkg").mkdir()
    (home / "pkg" / "__init__.py").write_text("")
    (home / "pkg" / "sub.py").write_text("def tag(w):\n    return w.upper()\n")
    return home


def _run(c: FaultCluster, home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GERYON, "mapreduce", "-q", "--name", "wc", "-R", "2", *args],
                          capture_output=True, text=True, env=env or c.job_env(), cwd=home, timeout=120)


def test_helpers_params_and_cmdenv_travel_and_nothing_else(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    home = _home(c)
    c.reference()  # builds the local copies of the disks and their ndb file
    opts = ("-D", "minlen=5", "--cmdenv", "SUFFIX=!")
    proc = _run(c, home, "--out", str(c.tmp / "out"), *opts, "map.py", "map.py", *sorted(c.corpus))
    assert proc.returncode == 0, proc.stderr
    env = c.job_env()
    env.pop("GERYON_REGISTRY")
    local = _run(c, home, "--local", "--ndb", str(c.tmp / "local-disks" / "ndb"), "--out", str(c.tmp / "local"),
                 *opts, "map.py", "map.py", *sorted(c.corpus), env=env)
    assert local.returncode == 0, local.stderr
    for r in range(2):
        got = (c.tmp / "out" / f"part-{r:05d}").read_bytes()
        assert got == (c.tmp / "local" / f"part-{r:05d}").read_bytes()
    lines = b"".join((c.tmp / "out" / f"part-{r:05d}").read_bytes() for r in range(2)).decode().splitlines()
    assert lines and all(k.endswith("!") and k[:-1].isupper() and len(k) >= 6 for k in (ln.split("\t")[0] for ln in lines))
    rec = job_record(c.jobs_dir)
    assert rec["params"] == {"minlen": "5"} and rec["cmdenv"] == {"SUFFIX": "!"}
    # every node holds the job's files only: no key, no old results
    for node in c.nodes.values():
        packs = c.tmp / f"work-{node.name}" / "packs"
        shipped = sorted(str(p.relative_to(d)) for d in packs.iterdir() if not d.name.startswith(".")
                         for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        assert shipped == ["geryon-job.json", "helper.py", "map.py", "pkg/__init__.py", "pkg/sub.py"], shipped


def test_a_module_the_nodes_lack_fails_once_with_the_traceback(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    job = c.tmp / "job"
    job.mkdir()
    (job / "map.py").write_text("import onlyhere\n\ndef map(key, value):\n    return [(value[:1], 1)]\n\n"
                                "def reduce(key, values):\n    return sum(values)\n")
    site = c.tmp / "site"    # installed here (on PYTHONPATH), not on the nodes
    site.mkdir()
    (site / "onlyhere.py").write_text("")
    env = c.job_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = _run(c, job, "map.py", "map.py", *sorted(c.corpus), env=env)
    assert proc.returncode == 1
    assert "ModuleNotFoundError: No module named 'onlyhere'" in proc.stderr, proc.stderr
    assert "import onlyhere" in proc.stderr, proc.stderr     # the traceback's line
    tried = attempts(c.jobs_dir)
    assert tried and all(a["attempt"] == 0 for a in tried), tried   # never retried
    events = job_events(c.jobs_dir)
    assert "excluded" not in events and "retrying" not in events, events
