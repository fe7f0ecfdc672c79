"""Hadoop Streaming's job model in local mode, against sequential references: the streaming combiner
(`--combiner CMD`), key fields (`--key-fields N`, `--partition-fields M`: grouping by M fields,
secondary sort by N), the partitioner command (`--partitioner-cmd CMD`), and their bad input.
(The same jobs on a cluster: tests/faults/test_faults_streaming_jobmodel.py.)"""
from __future__ import annotations

import os
import pathlib
import re
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon.errors import JobDefinitionError
from geryon.mapreduce.job import Job

# Word count in awk: a map printing "word<TAB>1", and a reduce summing sorted runs, which is also a
# valid combiner (it reads sorted key<TAB>value lines and prints such lines).
# (In Job(...) a command is a sh command line; the CLI also takes an Inferno-style block `{ ... }`.)
WC_MAP_SH = "awk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }'"
WC_SUM_SH = "awk -F '\\t' '($1 \"\") != w { if (NR > 1) print w \"\\t\" n; w = $1; n = 0 } { n += $2 } END { if (NR > 0) print w \"\\t\" n }'"
WC_MAP, WC_SUM = f"{{ {WC_MAP_SH} }}", f"{{ {WC_SUM_SH} }}"


def _parts(out: pathlib.Path) -> list[str]:
    return [p.read_text() for p in sorted(out.iterdir()) if p.name.startswith("part-")]


def _summary_counter(stderr: str, name: str) -> int:
    m = re.search(rf"counter geryon/{name}: ([\d,]+)", stderr)
    return int(m.group(1).replace(",", "")) if m else 0


# -- the streaming combiner --------------------------------------------------------------------------

TEXTS = {
    "second disk": {"b notes.txt": "the cat sat on the mat\nthe end\n" * 30, "a.txt": "a b a\n\nb  c\n"},
    "first": {"x y.txt": "".join(f"w{i % 7} w{i % 3} the\n" for i in range(200))},
}


def _counts(disks: list[pathlib.Path]) -> dict[str, int]:
    from collections import Counter

    c: Counter = Counter()
    for d in disks:
        for f in sorted(d.iterdir()):
            c.update(f.read_text().split())
    return dict(c)


def test_combiner_cli_output_equals_the_job_without_it(dir_disks, tmp_path: pathlib.Path, geryon_proc) -> None:
    """`--combiner CMD` on word count: the parts are byte-identical to the job without a combiner and
    to the reference counts, while the combiner did run and shrank the map output."""
    disks = dir_disks(tmp_path / "in", TEXTS)
    work = tmp_path / "elsewhere"
    work.mkdir()
    runs = {}
    for name, extra in (("plain", []), ("combined", ["--combiner", WC_SUM])):
        proc = geryon_proc("mapreduce", "--local", "-R", "3", "--split-size", "1K", "--out", tmp_path / name,
                           *extra, WC_MAP, WC_SUM, *disks, cwd=str(work), env={"HOME": str(tmp_path / "home")})
        assert proc.returncode == 0, proc.stderr
        runs[name] = (_parts(tmp_path / name), proc.stderr)
    assert runs["combined"][0] == runs["plain"][0]
    got = dict(ln.split("\t") for part in runs["plain"][0] for ln in part.splitlines())
    assert {k: int(v) for k, v in got.items()} == _counts(disks)
    stderr = runs["combined"][1]
    into, out = _summary_counter(stderr, "combine_input_records"), _summary_counter(stderr, "combine_output_records")
    assert into == sum(_counts(disks).values()) and 0 < out < into, stderr
    assert _summary_counter(runs["plain"][1], "combine_input_records") == 0


def test_combiner_runs_on_every_spill_and_changes_nothing(tmp_path: pathlib.Path, geryon_proc) -> None:
    """A map task larger than its sort budget spills several times: the combiner runs on each spill
    (it prints each key once per spill: more lines than distinct keys, fewer than it read), and the
    output still equals the job without it."""
    disk = tmp_path / "big"
    disk.mkdir()
    words = [f"k{i % 50}" for i in range(300_000)]
    (disk / "words.txt").write_text("\n".join(words) + "\n")
    outs = {}
    for name, extra in (("plain", []), ("combined", ["--combiner", WC_SUM])):
        proc = geryon_proc("mapreduce", "--local", "-j", "1", "-R", "2", "--sort-budget", "1M", "--out",
                           tmp_path / name, *extra, WC_MAP, WC_SUM, disk, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        outs[name] = (_parts(tmp_path / name), proc.stderr)
    assert outs["combined"][0] == outs["plain"][0]
    stderr = outs["combined"][1]
    spills = _summary_counter(stderr, "map_spills")
    assert spills >= 2, stderr
    assert _summary_counter(stderr, "combine_input_records") == 300_000
    assert _summary_counter(stderr, "combine_output_records") == 50 * spills   # each spill (the last one too): every key once
    got = {k: int(v) for part in outs["plain"][0] for k, v in (ln.split("\t") for ln in part.splitlines())}
    assert got == {f"k{i}": 6000 for i in range(50)}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.tuples(st.sampled_from(["hot", "a", "b\tx", "ça", "z"]), st.integers(0, 9)), max_size=120),
       r=st.integers(1, 4), split=st.integers(8, 400))
def test_combiner_api_equals_the_sequential_reference(tmp_path_factory, lines, r, split) -> None:
    """Job(map=CMD, combine=CMD, reduce=CMD): random keys (a hot one; tabs in values), random R and
    splits: with or without the combiner, the same sums as a sequential sum per key."""
    root = tmp_path_factory.mktemp("comb")
    disk = root / "d"
    disk.mkdir()
    (disk / "pairs").write_text("".join(f"{k}\t{v}\n" for k, v in lines))
    want: dict[str, int] = {}
    for k, v in lines:
        key = k.split("\t")[0]
        want[key] = want.get(key, 0) + (v if "\t" not in k else 0)
    # the map keeps the line; a value with a tab ("x\t3") counts 0 in awk's $2
    outs = []
    for combine in (None, WC_SUM_SH):
        job = Job(map="cat", combine=combine, reduce=WC_SUM_SH, partitions=r, reader="lines", split_size=split,
                  format="text", name="sums")
        result = job.run([str(disk)], out=str(root / f"out{combine is None}"), workers=2)
        outs.append([pathlib.Path(p).read_text() for p in result.parts])
    assert outs[0] == outs[1]
    got = {k: int(v) for part in outs[0] for k, v in (ln.split("\t") for ln in part.splitlines())}
    assert got == want


def test_a_failing_combiner_fails_the_job_in_one_line_and_writes_nothing(tmp_path: pathlib.Path,
                                                                         geryon_proc) -> None:
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "f.txt").write_text("a b\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", "--combiner",
                       "{ echo oops >&2; exit 3 }", WC_MAP, WC_SUM, disk, cwd=str(tmp_path))
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith("geryon: map task m0 ") and first.endswith(
        "failed: combiner echo oops >&2; exit 3: command exit status 3"), proc.stderr
    assert "oops" in proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("part-*"))


def test_a_combiner_printing_without_end_is_stopped_at_the_sort_budget(tmp_path: pathlib.Path,
                                                                       geryon_proc) -> None:
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "f.txt").write_text("a b\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "--sort-budget", "1M", "--out", tmp_path / "out", "--combiner",
                       "{ yes 'k\t1' }", WC_MAP, WC_SUM, disk, cwd=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].endswith(
        "failed: combiner yes 'k\t1' printed more than --sort-budget 1.0 MiB for one buffer of 2 lines: "
        "a combiner's output must fit where its input did"), proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("part-*"))


def test_a_combiner_command_needs_a_streaming_map(tmp_path: pathlib.Path, geryon_proc) -> None:
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "f.txt").write_text("a b\n")
    (tmp_path / "wc.py").write_text("def map(k, v):\n    yield v, 1\n\ndef reduce(k, vs):\n    return sum(vs)\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", "--combiner", "cat",
                       "wc.py", "wc.py", disk, cwd=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["geryon: the combiner cat is a command, which reads and writes text lines: "
                                        "it needs a streaming map (a Python map: combine(key, values))"]
    assert not (tmp_path / "out").exists()
    with pytest.raises(JobDefinitionError, match="needs a streaming map"):
        Job(map=lambda k, v: [(v, 1)], combine="cat")
    with pytest.raises(JobDefinitionError, match="map-only job .* runs no combiner"):
        Job(map="cat", combine="cat", partitions=0)


# -- key fields: --key-fields N, --partition-fields M --------------------------------------------------

def _key_of(line: str, n: int) -> str:
    fields = line.split("\t")
    return line if len(fields) <= n else "\t".join(fields[:n])


def _as_reduced(line: str, n: int) -> str:
    """A map's line as a reducer reads it: key, tab, value (Hadoop Streaming: a line of N fields
    or fewer is all key, and its value empty: it comes back with a tab at the end)."""
    return line if line.count("\t") >= n else line + "\t"


FIELD = st.text(st.sampled_from("abz09é-"), max_size=3)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(st.lists(FIELD, min_size=1, max_size=5),
                               st.lists(st.just("hot"), min_size=2, max_size=4)), max_size=100),
       n=st.integers(1, 3), m_less=st.integers(0, 2), r=st.integers(1, 5), split=st.integers(8, 300))
def test_key_fields_group_partition_and_sort_as_the_reference(tmp_path_factory, rows, n, m_less, r, split) -> None:
    """Random lines of tab-separated fields (a hot key: skew), random N, M <= N, R and splits, map
    and reduce `cat`: part r holds exactly the lines whose first M fields hash to r (KeyFieldBased-
    Partitioner over crc32), ordered by their first N fields (stable: input order among equal keys),
    so that each M-field group is in one part, contiguous."""
    m = max(1, n - m_less)
    lines = ["\t".join(fields) for fields in rows]
    root = tmp_path_factory.mktemp("kf")
    disk = root / "d"
    disk.mkdir()
    (disk / "rows").write_text("".join(ln + "\n" for ln in lines))
    job = Job(map="cat", reduce="cat", key_fields=n, partition_fields=m, partitions=r, reader="lines",
              split_size=split, name="kf")
    result = job.run([str(disk)], out=str(root / "out"), workers=2)
    got = [pathlib.Path(p).read_text().splitlines() for p in result.parts]

    def part(line: str) -> int:
        prefix = "\t".join(_key_of(line, n).split("\t")[:m])
        return zlib.crc32(prefix.encode()) % r if r > 1 else 0

    want = [[_as_reduced(ln, n) for ln in sorted((ln for ln in lines if part(ln) == i), key=lambda ln: _key_of(ln, n))]
            for i in range(r)]
    # a line's value is what follows its key, unchanged (tabs too); the reducer writes it back
    assert got == want
    for p in got:   # each group of M fields is one run of lines
        prefixes = ["\t".join(ln.split("\t")[:m]) for ln in p]
        runs = [x for i, x in enumerate(prefixes) if i == 0 or x != prefixes[i - 1]]
        assert len(runs) == len(set(runs))


def test_key_fields_cli_secondary_sort(dir_disks, tmp_path: pathlib.Path, geryon_proc) -> None:
    """`--key-fields 2 --partition-fields 1`: a streaming reducer sees each user's lines together, in
    the order of the second field (a secondary sort), while the job without them sees one user's
    lines in input order."""
    disks = dir_disks(tmp_path / "in", {"d2": {"t.tsv": "u1\t3\tc\nu2\t1\ty\nu1\t1\ta\n"},
                                           "d1": {"s.tsv": "u1\t2\tb\nu3\t0\tq\nu2\t0\tx\n"}})
    out = tmp_path / "out"
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "3", "--reader", "lines", "--key-fields", "2",
                       "--partition-fields", "1", "--out", out, "cat", "cat", *disks, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    parts = [p.splitlines() for p in _parts(out)]
    by_user = {ln.split("\t")[0]: [] for p in parts for ln in p}
    for i, p in enumerate(parts):
        for ln in p:
            by_user[ln.split("\t")[0]].append((i, ln))
    assert {u: [ln for _, ln in v] for u, v in by_user.items()} == {
        "u1": ["u1\t1\ta", "u1\t2\tb", "u1\t3\tc"], "u2": ["u2\t0\tx", "u2\t1\ty"], "u3": ["u3\t0\tq"]}
    assert all(len({i for i, _ in v}) == 1 for v in by_user.values())   # a user's lines in one part
    plain = tmp_path / "plain"
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "1", "--reader", "lines", "--out", plain, "cat", "cat",
                       *disks, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    u1 = [ln for ln in _parts(plain)[0].splitlines() if ln.startswith("u1")]
    assert u1 == ["u1\t3\tc", "u1\t1\ta", "u1\t2\tb"]   # the control: input order (d2 first)


@pytest.mark.parametrize("args, message", [
    (["--key-fields", "0"], "--key-fields must be 1 or more (the key is the first N fields), not 0"),
    (["--key-fields", "-2"], "--key-fields must be 1 or more (the key is the first N fields), not -2"),
    (["--key-fields", "2", "--partition-fields", "3"], "--partition-fields must be 1..2 (at most --key-fields 2), not 3"),
    (["--partition-fields", "2"], "--partition-fields must be 1..1 (at most --key-fields 1), not 2"),
    (["--key-fields", "2", "--partition-fields", "0"], "--partition-fields must be 1..2 (at most --key-fields 2), not 0"),
])
def test_bad_key_fields_are_usage_errors(tmp_path: pathlib.Path, geryon_proc, args, message) -> None:
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "f").write_text("a\tb\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", *args, "cat", "cat", disk,
                       cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"geryon: {message}"]
    assert not (tmp_path / "out").exists()


def test_key_field_job_definitions_refused() -> None:
    with pytest.raises(JobDefinitionError, match="key_fields must be 1 or more, not 0"):
        Job(map="cat", key_fields=0)
    with pytest.raises(JobDefinitionError, match=r"partition_fields must be 1\.\.2 .*, not 3"):
        Job(map="cat", key_fields=2, partition_fields=3)
    with pytest.raises(JobDefinitionError, match="key_fields is for a streaming map"):
        Job(map=lambda k, v: [(v, 1)], key_fields=2)
    with pytest.raises(JobDefinitionError, match="partition_fields is for a streaming map"):
        Job(map=lambda k, v: [(v, 1)], partition_fields=1)
    with pytest.raises(JobDefinitionError, match="map-only job .* drop the key fields"):
        Job(map="cat", key_fields=2, partitions=0)


# -- the partitioner command: --partitioner-cmd CMD ----------------------------------------------------

BY_LENGTH = """#!/bin/sh
# madoop's convention: R is the first argument; keys in, one per line; a partition number out for each
exec awk -v n="$1" '{ print length($0) % n }'
"""


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(st.lists(st.text("abc-", max_size=6), min_size=1, max_size=3),
                               st.just(["hot", "x"])), max_size=150),
       r=st.integers(1, 6), split=st.integers(8, 300))
def test_partitioner_command_places_every_key_as_the_reference(tmp_path_factory, rows, r, split) -> None:
    """Random lines of 1-3 fields (keys of two fields, with a tab; a hot key), random R and splits:
    part i holds exactly the lines whose key the command puts in i (awk: its length mod R, the tab
    counted), ordered by key, input order among equal keys."""
    root = tmp_path_factory.mktemp("pc")
    (root / "by length.sh").write_text(BY_LENGTH)
    os.chmod(root / "by length.sh", 0o755)
    disk = root / "d"
    disk.mkdir()
    lines = ["\t".join(fields) for fields in rows]
    (disk / "rows").write_text("".join(ln + "\n" for ln in lines))
    job = Job(map="cat", reduce="cat", partition_cmd=(str(root / "by length.sh"),), partitions=r, key_fields=2,
              reader="lines", split_size=split, name="pc")
    result = job.run([str(disk)], out=str(root / "out"), workers=2)
    got = [pathlib.Path(p).read_text().splitlines() for p in result.parts]
    want = [[_as_reduced(ln, 2) for ln in sorted((ln for ln in lines if len(_key_of(ln, 2)) % r == i or r == 1),
                                                 key=lambda ln: _key_of(ln, 2))] for i in range(r)]
    assert got == want


@pytest.mark.parametrize("command, message", [
    ("{ while read k; do echo -1; done }", "partitioner while read k; do echo -1; done answered -1 for key 'a', "
                                           "outside 0..2"),
    ("{ while read k; do echo $1; done }", "partitioner while read k; do echo $1; done answered 3 for key 'a', "
                                           "outside 0..2"),
    ("{ while read k; do echo two; done }", "partitioner while read k; do echo two; done answered 'two' for key "
                                            "'a', not a partition number 0..2"),
    ("{ while read k; do echo 1.0; done }", "partitioner while read k; do echo 1.0; done answered '1.0' for key "
                                            "'a', not a partition number 0..2"),
    ("{ head -n 1 >/dev/null; echo 0 }", "partitioner head -n 1 >/dev/null; echo 0 answered 1 line for 2 keys: "
                                         "none for key 'b'"),
    ("{ cat >/dev/null; echo 0; echo 0; echo 0 }", "partitioner cat >/dev/null; echo 0; echo 0; echo 0 answered "
                                                  "more than 2 lines for 2 keys"),
    ("{ yes 0 }", "partitioner yes 0 answered more than 2 lines for 2 keys"),   # stopped, not read forever
    ("{ echo broken >&2; exit 4 }", "partitioner echo broken >&2; exit 4: command exit status 4"),
])
def test_a_bad_partitioner_command_fails_in_one_line_and_writes_nothing(tmp_path: pathlib.Path, geryon_proc,
                                                                        command, message) -> None:
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "f.txt").write_text("a\t1\nb\t2\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "-j", "1", "-R", "3", "--reader", "lines", "--out",
                       tmp_path / "out", "--partitioner-cmd", command, "cat", "cat", disk, cwd=str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("geryon: map task m0 ") and first.endswith(message), first
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("part-*"))


def test_partitioner_command_gets_r_as_argument_and_in_its_environment(tmp_path: pathlib.Path,
                                                                       geryon_proc) -> None:
    """An executable gets R as argv[1] (madoop's); a command block as $1; both as $GERYON_PARTITIONS."""
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "f.txt").write_text("".join(f"k{i}\t{i}\n" for i in range(20)))
    script = tmp_path / "last.sh"
    script.write_text('#!/bin/sh\n[ "$1" = "$GERYON_PARTITIONS" ] || exit 9\n'
                      'exec awk -v n="$1" \'{ print n - 1 }\'\n')
    os.chmod(script, 0o755)
    for name, command in (("exe", str(script)), ("block", '{ [ "$1" = 4 ] && awk \'{ print 3 }\' }')):
        out = tmp_path / name
        proc = geryon_proc("mapreduce", "-q", "--local", "-R", "4", "--reader", "lines", "--out", out,
                           "--partitioner-cmd", command, "cat", "cat", disk, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        parts = _parts(out)
        assert parts[:3] == ["", "", ""] and len(parts[3].splitlines()) == 20


def test_partitioner_command_definitions_refused() -> None:
    with pytest.raises(JobDefinitionError, match="partition_cmd is for a streaming map"):
        Job(map=lambda k, v: [(v, 1)], partition_cmd="cat")
    with pytest.raises(JobDefinitionError, match="partition_cmd must be a command"):
        Job(map="cat", partition_cmd=lambda k: 0)
    with pytest.raises(JobDefinitionError, match="chooses the partition: drop partition_fields"):
        Job(map="cat", key_fields=2, partition_fields=1, partition_cmd="cat")
    with pytest.raises(JobDefinitionError, match="map-only job .* drop the partitioner command"):
        Job(map="cat", partition_cmd="cat", partitions=0)


def test_a_streaming_reducer_reads_the_maps_lines_back_unescaped(tmp_path: pathlib.Path, geryon_proc) -> None:
    """After a streaming map, a value holding tabs reaches a streaming reducer as the map wrote it
    (Hadoop Streaming's), not with its tabs escaped as text output escapes them (`a\\tb\\\\tc`)."""
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "t.tsv").write_text("k2\tv\tw\tx\nk1\ta\tb\nk3\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "1", "--reader", "lines", "--out", tmp_path / "out",
                       "cat", "cat", disk, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert _parts(tmp_path / "out") == ["k1\ta\tb\nk2\tv\tw\tx\nk3\t\n"]


def _click_paths(logs: list[pathlib.Path]) -> dict[str, str]:
    """The sequential reference of examples/streaming: each user's pages in time order."""
    clicks = sorted(tuple(ln.split()) for f in logs for ln in f.read_text().splitlines() if ln.strip())
    paths: dict[str, list[str]] = {}
    for _, user, page in clicks:
        paths.setdefault(user, []).append(page)
    return {u: " > ".join(p) for u, p in paths.items()}


def test_streaming_example_click_paths_via_key_fields(dir_disks, tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    """examples/streaming, as the README runs it, and with its logs on two disks given in the other
    order: each user's click path in time order, once, in one part; without the key fields (the
    control) the paths follow the input order instead."""
    ex = examples / "streaming"
    logs = sorted((ex / "data").iterdir())
    want = _click_paths(logs)
    swapped = dir_disks(tmp_path / "in", {"b disk": {"one.log": logs[0].read_text()},
                                             "a disk": {"two.log": logs[1].read_text()}})
    for name, disks in (("readme", [ex / "data"]), ("swapped", [swapped[1], swapped[0]])):
        proc = geryon_proc("mapreduce", "-q", "--local", "-R", "3", "--reader", "lines", "--key-fields", "2",
                           "--partition-fields", "1", "--out", tmp_path / name, ex / "map.sh", ex / "reduce.sh",
                           *disks, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        rows = [ln.split("\t") for p in _parts(tmp_path / name) for ln in p.splitlines()]
        assert len(rows) == len(want) and dict(rows) == want, name
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "3", "--reader", "lines", "--out", tmp_path / "control",
                       ex / "map.sh", ex / "reduce.sh", ex / "data", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = dict(ln.split("\t") for p in _parts(tmp_path / "control") for ln in p.splitlines())
    assert rows != want and rows["alice"] == "/home > /cart > /thanks > /search > /checkout"


@pytest.fixture
def refused(tmp_path: pathlib.Path, geryon_proc):
    """`refused(CODE, *ARGS)`: `geryon mapreduce --local --out out ARGS in` run in tmp_path (which holds a
    plain text file and a Python word count) on a disk of one file must exit CODE and write nothing; its
    stderr lines are returned."""
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "f").write_text("a\tb\n")
    (tmp_path / "plain.txt").write_text("not a program\n")
    (tmp_path / "wc.py").write_text("def map(k, v):\n    yield v, 1\n\ndef reduce(k, vs):\n    return sum(vs)\n")

    def run(code: int, *args: str | pathlib.Path) -> list[str]:
        proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", *args, disk, cwd=str(tmp_path))
        assert proc.returncode == code, proc.stderr
        assert not (tmp_path / "out").exists()
        return proc.stderr.splitlines()
    return run


@pytest.mark.parametrize("args, message", [
    (["--combiner", "  "], "empty combiner command"),
    (["--combiner", "plain.txt"], "plain.txt: not executable (chmod +x, or give a .py script)"),
    (["--partitioner-cmd", "{ }"], "empty partitioner command"),
])
def test_bad_streaming_options_fail_in_one_line_and_write_nothing(refused, args, message) -> None:
    assert refused(1, *args, "cat", "cat") == [f"geryon: {message}"]


@pytest.mark.parametrize("args, message", [
    (["--partitioner-cmd", "cat", "--key-fields", "2", "--partition-fields", "1"],
     "--partitioner-cmd chooses the partition: drop --partition-fields"),
    (["--partitioner-cmd", "cat", "--partitioner", "geryon"], "--partitioner-cmd chooses the partition: drop --partitioner geryon"),
    (["--partitioner-cmd", "cat", "--total-order"], "--total-order partitions by sampled key ranges: drop --partitioner-cmd"),
    (["--key-fields", "2", "--partition-fields", "1", "--total-order"],
     "--total-order partitions by sampled key ranges: drop --partition-fields"),
])
def test_conflicting_partition_options_are_usage_errors(refused, args, message) -> None:
    assert refused(2, *args, "cat", "cat") == [f"geryon: {message}"]
    with pytest.raises(JobDefinitionError):   # the same job from Python
        kw = {"total_order": "--total-order" in args, "partitioner": "geryon" if "geryon" in args else "crc32",
              "key_fields": 2 if "--key-fields" in args else 1,
              "partition_fields": 1 if "--partition-fields" in args else None,
              "partition_cmd": "cat" if "--partitioner-cmd" in args else None}
        Job(map="cat", reduce="cat", **kw)


@pytest.mark.parametrize("option", [["--combiner", "cat"], ["--partitioner-cmd", "cat"], ["--key-fields", "2"]])
def test_streaming_options_with_a_python_map_fail_in_one_line(refused, option) -> None:
    lines = refused(1, *option, "wc.py", "wc.py")
    assert len(lines) == 1 and "streaming map" in lines[0], lines


@pytest.mark.parametrize("option", [["--combiner", "cat"], ["--key-fields", "2"]])
def test_streaming_options_are_refused_beside_a_steps_script(refused, examples, option) -> None:
    lines = refused(2, *option, examples / "topwords" / "topwords.py")
    assert any(f"lists steps: {option[0]} is for a single MAP REDUCE job" in ln for ln in lines), lines


def test_key_fields_with_total_order_sort_all_parts_by_the_whole_key(tmp_path: pathlib.Path, geryon_proc) -> None:
    """--key-fields 2 with --total-order: the parts read in order are sorted by both fields (the
    sampler samples the two-field keys), every line once."""
    import random

    rng = random.Random(5)
    disk = tmp_path / "in"
    disk.mkdir()
    lines = [f"{rng.choice('abcdefgh')}{rng.randrange(30)}\t{rng.randrange(1000):03d}\tv{i}" for i in range(3000)]
    (disk / "rows.tsv").write_text("".join(ln + "\n" for ln in lines))
    proc = geryon_proc("mapreduce", "-q", "--local", "--total-order", "-R", "3", "--reader", "lines", "--key-fields",
                       "2", "--out", tmp_path / "out", "cat", "cat", disk, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    parts = [p.splitlines() for p in _parts(tmp_path / "out")]
    assert len(parts) == 3 and all(parts)
    got = [ln for p in parts for ln in p]
    assert got == sorted(lines, key=lambda ln: _key_of(ln, 2))
