"""A streaming map's command sees exactly its own split (issue 18), in local mode.

The seed's mappers walk their disk themselves (`idx $n/d0.mbox/*`, `find $GERYON_DISK`);
the planner cuts a disk into several tasks, so each task's command must see only its
own files, or the disk is counted once per task. Every form must equal the stdin form
and a sequential reference (a Counter over the input), whatever the split size and the
worker count. Disk names are not the examples'; one file name holds a space.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from geryon.mapreduce.inputview import build_view, remove_view
from geryon.disks.chunk import ChunkFS
from geryon.mapreduce.job import Job, step_from_arg
from geryon.records.split import FileRange, Split
from shell.idx import index_words

DISK = "k3.msgs"
WORDS = "ash birch cedar Dogwood elm fir Ginkgo hazel ilex juniper kauri larch".split()

FORMS = {
    "stdin": "{ geryon idx }",
    "seed glob": "{ geryon idx $n/k3.msgs/* }",
    "find": "{ find $GERYON_DISK -type f -exec cat {} + | geryon idx }",
    "files list": "{ xargs -d '\\n' geryon idx < $GERYON_FILES_LIST }",
}
REDUCE = "{ geryon agg }"


@pytest.fixture(autouse=True)
def _geryon_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands call `geryon` by name: the one installed beside this interpreter."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def write_disk(root: Path, files: int = 10, lines: int = 40, seed: int = 18) -> Path:
    rng = random.Random(seed)
    disk = root / DISK
    disk.mkdir(parents=True)
    for i in range(files):
        name = "two words.txt" if i == 3 else f"m{i:02d}.txt"
        text = "\n".join(" ".join(rng.choice(WORDS) + ("." if rng.random() < 0.2 else "")
                                  for _ in range(rng.randrange(2, 9))) for _ in range(lines))
        (disk / name).write_text(text + "\n")
    return disk


def reference(disk: Path) -> Counter[str]:
    """Sequentially: the seed's idx over every file, counted."""
    total: Counter[str] = Counter()
    for path in sorted(p for p in disk.rglob("*") if p.is_file()):
        total.update(w.decode() for w in index_words(path.read_bytes()))
    return total


def counts_of(out: Path) -> Counter[str]:
    got: Counter[str] = Counter()
    for part in sorted(out.glob("part-*")):
        for line in part.read_text().splitlines():
            word, count = line.split()
            assert word not in got, f"{word} in two partitions"
            got[word] = int(count)
    return got


def run(form: str, disk: Path, out: Path, split_size: int | None, workers: int, reader: str = "file") -> Counter[str]:
    job = Job(map=step_from_arg(form, "map"), reduce=step_from_arg(REDUCE, "reduce"), partitions=3,
              split_size=split_size, reader=reader, name="seedform")
    job.run([str(disk)], out=str(out), workers=workers, workdir=str(out.parent))
    return counts_of(out)


@pytest.mark.parametrize(("split_size", "workers"), [(4 << 10, 1), (4 << 10, 4), (16 << 10, 2), (None, 3)])
def test_every_form_counts_each_file_once(tmp_path: Path, split_size: int | None, workers: int) -> None:
    disk = write_disk(tmp_path)
    want = reference(disk)
    for label, form in FORMS.items():
        got = run(form, disk, tmp_path / label.replace(" ", "_"), split_size, workers)
        assert got == want, label
    # nothing of the views is left behind
    assert not [p for p in tmp_path.rglob("*.view")]


def test_cut_ranges_of_one_big_file_are_views_of_their_lines(tmp_path: Path) -> None:
    disk = write_disk(tmp_path, files=2, lines=400)       # two files of ~12 KB, cut at 4 KiB
    want = reference(disk)
    for label in ("stdin", "seed glob", "find"):
        got = run(FORMS[label], disk, tmp_path / label.replace(" ", "_"), 4 << 10, 2, reader="lines")
        assert got == want, label


def test_the_issue_command_line_counts_once(tmp_path: Path) -> None:
    """The issue's measurement: the find form used to give 2x (4x with small splits)."""
    disk = write_disk(tmp_path)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    for label in ("find", "stdin"):
        out = tmp_path / label
        done = subprocess.run([sys.executable, "-c", "from geryon.cli import main; main()", "mapreduce", "-q",
                               "-j", "2", "--split-size", "8K", FORMS[label], REDUCE, str(disk), "--out", str(out)],
                              capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert counts_of(out) == reference(disk), label


def test_a_command_sees_only_its_split_and_its_variables(tmp_path: Path) -> None:
    """Each task lists what it sees; together the tasks saw every file exactly once."""
    disk = write_disk(tmp_path, files=8, lines=30)
    form = ('{ cd $GERYON_DISK && find . -type f | sed "s/^/seen\t/"; '
            'test "$PWD" = "$GERYON_DISK" && test -d "$n/$cpudisk" && test -w "$n/$cpudisk" '
            '&& touch "$n/$cpudisk/scratch" && ls $n | sed "s/^/ns\t/"; '
            'while IFS= read -r f; do test -f "$f" && printf "listed\\t%s\\n" "$f"; done < $GERYON_FILES_LIST; }')
    out = tmp_path / "out"
    job = Job(map=step_from_arg(form, "map"), reduce=step_from_arg("{ cat }", "reduce"), partitions=1,
              split_size=4 << 10, name="seen")
    job.run([str(disk)], out=str(out), workers=2, workdir=str(tmp_path))
    lines = [line.split("\t") for line in (out / "part-00000").read_text().splitlines()]
    seen = sorted(v for k, v in lines if k == "seen")
    assert seen == sorted(f"./{p.name}" for p in disk.iterdir())          # once each, over all tasks
    assert {v for k, v in lines if k == "ns"} == {DISK, "scratch.cpu"}
    listed = [os.path.basename(v) for k, v in lines if k == "listed"]
    assert sorted(listed) == sorted(p.name for p in disk.iterdir())


def test_view_links_whole_files_and_materialises_cut_ranges(tmp_path: Path) -> None:
    disk = tmp_path / "v1.disk"
    (disk / "sub dir").mkdir(parents=True)
    (disk / "sub dir" / "a b.txt").write_bytes(b"one two\nthree\n")
    big = b"".join(b"line %d\n" % i for i in range(100))
    (disk / "big.txt").write_bytes(big)
    split = Split("v1.disk", (FileRange("/sub dir/a b.txt", 0, 14), FileRange("/big.txt", 100, 300)))
    view = build_view(ChunkFS(str(disk)), split, str(tmp_path), "m0.a0", str(disk))
    try:
        linked = Path(view.disk_dir) / "sub dir" / "a b.txt"
        assert os.stat(linked).st_ino == os.stat(disk / "sub dir" / "a b.txt").st_ino   # a link, no copy
        cut = (Path(view.disk_dir) / "big.txt").read_bytes()
        first = big.index(b"\n", 99) + 1                 # the line holding byte 100 belongs to the range before
        assert cut == big[first:big.index(b"\n", 299) + 1]
        assert len(cut) < len(big)
        assert Path(view.files_list).read_text().splitlines() == [str(linked), str(Path(view.disk_dir) / "big.txt")]
        assert (view.linked, view.copied) == (1, 1)
        assert view.env()["n"] == os.path.dirname(view.disk_dir)
    finally:
        remove_view(view)
    assert not os.path.exists(view.root)
    assert (disk / "sub dir" / "a b.txt").read_bytes() == b"one two\nthree\n"      # the disk is untouched


def test_view_refuses_paths_outside_the_disk(tmp_path: Path) -> None:
    from geryon.records.badrecords import InputError

    disk = tmp_path / "d"
    disk.mkdir()
    with pytest.raises(InputError, match="bad input path"):
        build_view(ChunkFS(str(disk)), Split("d", (FileRange("/../etc/passwd", 0, 10),)), str(tmp_path), "m0.a0",
                   str(disk))


def test_damaged_linked_file_is_found_even_when_the_command_reads_no_stdin(tmp_path: Path) -> None:
    """A command reading its view, not stdin: the feed still reads (and verifies) every byte."""
    from geryon.disks.checksum import record_files
    from geryon.disks.chunk import create_chunk
    from geryon.errors import JobFailed

    disk = tmp_path / "z9.chunk"
    create_chunk(str(disk), 1 << 20)
    (disk / "f.txt").write_bytes(b"alpha beta\n" * 20000)          # 220 KB: more than a pipe holds
    record_files(str(disk), ["f.txt"])
    data = bytearray((disk / "f.txt").read_bytes())
    data[-5] ^= 1                                                   # damage the last block, same size
    (disk / "f.txt").write_bytes(bytes(data))
    job = Job(map=step_from_arg("{ geryon idx $n/z9.chunk/* }", "map"), reduce=step_from_arg(REDUCE, "reduce"),
              partitions=1, name="damaged")
    with pytest.raises(JobFailed, match="checksum"):
        job.run([str(disk)], out=str(tmp_path / "out"), workers=1, workdir=str(tmp_path))
