"""Disks remember their record format (issue 12 item 7).

`geryon load` names each disk with the format it cut its sources into (ndb `format=mbox`), and
`geryon mapreduce` reads that format unless `--reader` says otherwise: the README's word count
on loaded mail counts the messages' words, not the mbox `From ` separator lines. The mail is
built with Python's `mailbox` module; the reference applies the README's map to each message
as the mbox reader gives it (headers and body, without the From_ line, `>From` unquoted).
"""
from __future__ import annotations

import collections
import mailbox
import os
import pathlib
import random
import subprocess
import sys

import pytest

from geryon.disks.diskdb import read_disks
from geryon.errors import JobDefinitionError
from geryon.mapreduce.job import READER_OF_DISKS, disks_reader
from geryon.ingest.pieces import records_of

from tests.node.node_helpers import GERYON, Cluster, wait_until

README_MAP = """from collections import Counter
def map(key, value):
    return Counter(value.split())
"""

README_REDUCE = """def reduce(key, values):
    return sum(values)
"""


def make_mail(path: pathlib.Path, messages: int = 300, seed: int = 7) -> collections.Counter:
    """An mbox written by Python's `mailbox` module; the README's word count of its messages."""
    rng = random.Random(seed)
    words = [f"{a}{b}" for a in ("alpha", "beta", "gamma", "delta", "eps") for b in ("", "s", "ing")]
    box = mailbox.mbox(str(path))
    counts: collections.Counter = collections.Counter()
    for i in range(messages):
        body = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randrange(3, 12)))
                         for _ in range(rng.randrange(2, 20)))
        if i % 5 == 0:
            body = "From the start of a line, quoted by mailbox\n" + body
        msg = mailbox.mboxMessage()
        msg["From"] = f"user{i % 11}@example.org"
        msg["Subject"] = f"message {i}"
        msg["Message-ID"] = f"<{i}@example.org>"
        msg.set_payload(body + "\n")
        box.add(msg)
        counts.update(f"From: user{i % 11}@example.org\nSubject: message {i}\nMessage-ID: <{i}@example.org>\n\n"
                      f"{body}\n".split())
    box.flush()
    box.close()
    return counts


def parts_counts(out: pathlib.Path) -> dict[str, int]:
    got: dict[str, int] = {}
    for part in sorted(out.glob("part-*")):
        for line in part.read_text().splitlines():
            k, v = line.split("\t")
            assert k not in got
            got[k] = int(v)
    return got


def test_a_load_records_the_reader_of_what_it_stored(tmp_path: pathlib.Path) -> None:
    (tmp_path / "d").mkdir()
    assert records_of(["mail.mbox"]) == "mbox" and records_of(["mail.mbox.gz"]) == "mbox"
    assert records_of(["a.txt", "b.log"]) == "lines" and records_of(["x.warc"]) == "warc"
    assert records_of(["src.tar.gz"]) == "file" and records_of([str(tmp_path / "d")]) == "file"
    assert records_of([str(tmp_path / "d")], "mbox") == "mbox" and records_of(["a.txt"], "file") == "file"
    assert records_of(["mail.mbox", "a.txt"]) == ""                 # mixed: nothing recorded


def test_a_job_reads_its_disks_format_unless_told() -> None:
    assert disks_reader(READER_OF_DISKS, [("d0.mbox", "mbox"), ("d1.mbox", "mbox")]) == "mbox"
    assert disks_reader(READER_OF_DISKS, [("dir", ""), ("out", "")]) == "file"
    assert disks_reader("lines", [("d0.mbox", "mbox")]) == "lines"
    with pytest.raises(JobDefinitionError, match=r"different records \(d0.mbox: mbox, d0.txt: lines\).*--reader"):
        disks_reader(READER_OF_DISKS, [("d0.mbox", "mbox"), ("d0.txt", "lines")])
    with pytest.raises(JobDefinitionError, match=r"different records \(d0.mbox: mbox, here: file\)"):
        disks_reader(READER_OF_DISKS, [("d0.mbox", "mbox"), ("here", "")])


# The installed command, as a user runs it: `python -c` would put the current directory (which
# holds `ndb/cluster` after a load) first on sys.path, where `import ndb` would find it.
SCRIPT = os.path.join(os.path.dirname(sys.executable), "geryon")
COMMAND = [SCRIPT] if os.path.exists(SCRIPT) else [sys.executable, "-P", *GERYON[1:]]


def _geryon(cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"XDG_CONFIG_HOME": str(cwd / "config"), "GERYON_JOBS_DIR": str(cwd / "jobs")})
    return subprocess.run([*COMMAND, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_the_readme_word_count_on_locally_loaded_mail_counts_messages(tmp_path: pathlib.Path) -> None:
    expected = make_mail(tmp_path / "mail.mbox")
    loaded = _geryon(tmp_path, "load", "mail.mbox", "--app", "mbox", "--chunk", "32K", "-q")
    assert loaded.returncode == 0, loaded.stderr
    names = loaded.stdout.split()
    assert len(names) >= 2 and names[0] == "d0.mbox"
    assert {d.format for d in read_disks(str(tmp_path / "ndb" / "cluster"))} == {"mbox"}
    assert "format=mbox" in (tmp_path / "ndb" / "cluster").read_text()
    (tmp_path / "map.py").write_text(README_MAP)
    (tmp_path / "reduce.py").write_text(README_REDUCE)

    r = _geryon(tmp_path, "mapreduce", "-q", "map.py", "reduce.py", *names, "--out", "result")
    assert r.returncode == 0, r.stderr
    assert parts_counts(tmp_path / "result") == dict(expected)

    # --reader still wins: whole chunk files, From_ separator lines and all
    whole = _geryon(tmp_path, "mapreduce", "-q", "--reader", "file", "map.py", "reduce.py", *names, "--out", "whole")
    assert whole.returncode == 0, whole.stderr
    got = parts_counts(tmp_path / "whole")
    assert got["MAILER-DAEMON"] == 300 and "MAILER-DAEMON" not in expected


def test_the_readme_word_count_on_mail_loaded_on_a_cluster_counts_messages(cluster: Cluster,
                                                                          tmp_path: pathlib.Path) -> None:
    cluster.start_registry()
    cluster.start_node("n1", ["c0", "c1"], capacity=1 << 20)
    cluster.start_node("n2", ["c0", "c1"], capacity=1 << 20)
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"resource": "kfs"})) == 4, 10)
    expected = make_mail(tmp_path / "mail.mbox")
    loaded = cluster.geryon("load", str(tmp_path / "mail.mbox"), "--app", "mbox", "--cluster", "--chunk", "64K", "-q")
    assert loaded.returncode == 0, loaded.stderr
    names = loaded.stdout.split()
    assert len(names) >= 2
    with cluster.client() as reg:
        named = wait_until(lambda: (lambda s: s if len(s) == len(names) else None)(
            [s for s in reg.find({"chunk": "*"}) if s.name in names and s.get("addr")]), 10)
    assert {s.get("format") for s in named} == {"mbox"}
    (tmp_path / "map.py").write_text(README_MAP)
    (tmp_path / "reduce.py").write_text(README_REDUCE)
    r = cluster.geryon("mapreduce", "-q", str(tmp_path / "map.py"), str(tmp_path / "reduce.py"), *names,
                       "--out", str(tmp_path / "result"), timeout=240)
    assert r.returncode == 0, r.stderr
    assert parts_counts(tmp_path / "result") == dict(expected)
