"""One ndb file for the cluster (issue 12 item 6): the registry's.

`geryon load --cluster` names its disks in the registry's ndb file (`registry serve --ndb`,
default beside the secret), sent over the wire, so the job right after it finds `d0.mbox`
with no flag, from any machine; `--ndb FILE` (or $GERYON_NDB) still names a file instead.
Edits keep the file's other entries and comments, and one based on a stale reading is
refused (the writer reads again and retries).
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from geryon.disks.diskdb import RegistryNdb, app_disk_pattern, read_disks, DiskEntry

from tests.node.node_helpers import GERYON, Cluster, wait_until

SCRIPT = os.path.join(os.path.dirname(sys.executable), "geryon")
COMMAND = [SCRIPT] if os.path.exists(SCRIPT) else GERYON


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts."""


def _mail(path: pathlib.Path, n: int = 40) -> pathlib.Path:
    path.write_text("".join(f"From u{i}@example.org Mon Jan  1 00:00:00 2024\nSubject: m{i}\n\nbody {i} words\n\n"
                            for i in range(n)))
    return path


def _user(c: Cluster, cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`geryon ...` as the README's user runs it: the registry, the secret, no ndb file named."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"GERYON_REGISTRY": c.registry_url, "GERYON_SECRET_FILE": str(c.secret_file),
                "XDG_CONFIG_HOME": str(c.tmp / "user-config"), "GERYON_JOBS_DIR": str(c.tmp / "jobs")})
    return subprocess.run([*COMMAND, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


MAP = "def map(key, value):\n    yield 'messages', 1\n"
REDUCE = "def reduce(key, values):\n    return sum(values)\n"


def test_load_names_its_disks_in_the_registry_and_the_job_finds_them(cluster: Cluster) -> None:
    cluster.name_disks("# the user's own notes\nname=other kfs master=n9!c9\n")
    cluster.start_registry()
    cluster.start_node("n1", ["c0", "c1", "c2", "c3"], capacity=1 << 20)
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"resource": "kfs"})) == 4, 10)
    user = cluster.tmp / "elsewhere"
    user.mkdir()
    loaded = _user(cluster, user, "load", str(_mail(cluster.tmp / "mail.mbox")), "--app", "mbox", "--cluster",
                   "--chunk", "2K")
    assert loaded.returncode == 0, loaded.stderr
    names = loaded.stdout.split()
    assert names[:2] == ["d0.mbox", "d1.mbox"]
    assert f"named in the registry's {cluster.ndb}" in loaded.stderr
    assert not (user / "ndb").exists()                      # nothing named on this machine
    text = cluster.ndb.read_text()
    assert text.startswith("# the user's own notes\nname=other kfs master=n9!c9\n")
    assert [d.name for d in read_disks(str(cluster.ndb))] == ["other", *names]
    # the seed's command right after, no flag: the registry serves the names already
    (user / "map.py").write_text(MAP)
    (user / "reduce.py").write_text(REDUCE)
    r = _user(cluster, user, "mapreduce", "-q", "-R", "1", "map.py", "reduce.py", *names, "--out", "out")
    assert r.returncode == 0, r.stderr
    assert (user / "out" / "part-00000").read_text() == "messages\t40\n"

    # loading the app again replaces its entries, keeps the others
    again = _user(cluster, user, "load", str(cluster.tmp / "mail.mbox"), "--app", "mbox", "--cluster", "-q",
                  "--chunk", "64K")
    assert again.returncode == 0, again.stderr
    assert [d.name for d in read_disks(str(cluster.ndb))] == ["other", "d0.mbox"]
    assert cluster.ndb.read_text().startswith("# the user's own notes\n")

    # --ndb FILE still names a local file (and the registry learns nothing)
    local = user / "mine.ndb"
    named = _user(cluster, user, "load", str(cluster.tmp / "mail.mbox"), "--app", "more", "--cluster", "-q", "--chunk", "64K",
                  "--ndb", str(local))
    assert named.returncode == 0, named.stderr
    assert [d.name for d in read_disks(str(local))] == ["d0.more"]
    assert "d0.more" not in cluster.ndb.read_text()


def test_an_edit_based_on_a_stale_reading_is_refused_and_retried(cluster: Cluster) -> None:
    from registry.errors import BadRequest, Conflict

    cluster.start_registry()
    with cluster.client() as reg:
        version = reg.ndb()["version"]
        reg.edit_ndb([], "name=d0.a kfs master=n1!c0\n", base=version)
        with pytest.raises(Conflict, match="changed meanwhile"):
            reg.edit_ndb([], "name=d1.a kfs master=n1!c1\n", base=version)
        with pytest.raises(BadRequest, match="cannot update"):
            reg.edit_ndb([], "name='unterminated\n")
        stale = RegistryNdb(reg)
        stale.replace(app_disk_pattern("a"), [DiskEntry("d0.a", None, "n2", chunk="c5", format="lines")])
        wait_until(lambda: [s for s in reg.find({"chunk": "c5"}) if s.name == "d0.a" and s.get("format") == "lines"],
                   5)
    assert cluster.ndb.read_text() == "name=d0.a kfs=\n\tmaster=n2!c5\n\tformat=lines\n"


def test_a_registry_given_no_ndb_keeps_the_names_beside_the_secret(cluster: Cluster) -> None:
    config = cluster.tmp / "config"                       # the registry's XDG_CONFIG_HOME (node_helpers)
    p = cluster._proc([*GERYON, "registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns",
                       "--secret-file", str(cluster.secret_file)], "registry")
    line = p.readline()
    assert "listening on" in line, line + p.stderr()
    cluster.registry_url = line.split("listening on", 1)[1].split()[0]
    default = config / "geryon" / "cluster.ndb"
    assert f"geryon: registry: disks named in {default}" in p.stderr()
    with cluster.client() as reg:
        assert reg.ndb()["path"] == str(default) and reg.ndb()["text"] == ""
        reg.edit_ndb([], "name=d0.b kfs master=n1!c0\n")
    assert default.read_text() == "name=d0.b kfs master=n1!c0\n"


def test_disk_new_replicate_and_promote_name_disks_in_the_registry_too(cluster: Cluster) -> None:
    cluster.start_registry()
    cluster.start_node("n1", ["c0"], capacity=1 << 20)
    cluster.start_node("n2", ["c0"], capacity=1 << 20)
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"resource": "kfs"})) == 2, 10)
    user = cluster.tmp / "elsewhere"
    user.mkdir()
    made = _user(cluster, user, "disk", "new", "d0.mail", "--cluster", "--host", "n1", "--size", "1M")
    assert made.returncode == 0, made.stderr
    assert made.stdout == "n1!c0\n" and "named in the registry's ndb file" in made.stderr
    assert [(d.name, d.master) for d in read_disks(str(cluster.ndb))] == [("d0.mail", "n1!c0")]
    (user / "letter").write_text("dear user\n")
    copied = _user(cluster, user, "cp", "letter", "d0.mail:/")
    assert copied.returncode == 0, copied.stderr
    replicated = _user(cluster, user, "disk", "replicate", "d0.mail", "--to", "n2")
    assert replicated.returncode == 0, replicated.stderr
    assert replicated.stdout.startswith("d0.mail.r1 n2!c0")
    promoted = _user(cluster, user, "disk", "promote", "d0.mail", "--force")
    assert promoted.returncode == 0, promoted.stderr
    assert {d.name: d.master for d in read_disks(str(cluster.ndb))}["d0.mail"] == "n2!c0"
    assert not (user / "ndb").exists()
    taken = _user(cluster, user, "disk", "new", "d0.mail", "--cluster")
    assert taken.returncode == 1 and taken.stderr == "geryon: d0.mail: already named in the registry's ndb file\n"
