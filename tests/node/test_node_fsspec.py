"""`geryon://` through fsspec against live node daemons: fsspec's own abstract test suites,
pandas, pyarrow and Dask reading part files, disk names with failover, and the errors."""
from __future__ import annotations

import io
import os
import posixpath
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from fsspec.tests.abstract import (AbstractCopyTests, AbstractFixtures, AbstractGetTests, AbstractOpenTests,
                                   AbstractPipeTests, AbstractPutTests)

from geryon.disks.chunk import META_NAME
from geryon.errors import DiskFull, GeryonError
from geryon.disks.fsspecfs import GeryonFileSystem, split_path
from geryon.net.connection import NodeUnavailable
from node_helpers import Cluster, wait_until
from registry.auth import create_secret, load_secret

PART = "".join(f"{w}\t{n}\n" for w, n in [("alpha", 3), ("beta", 1), ("gamma", 12), ("z\u00e9ta", 7)])
"""A part file as a text-format job writes it: key TAB value, sorted by key."""


def _hostport(node_url: str) -> str:
    return node_url.split("://", 1)[1]


def _empty(root: Path) -> None:
    for entry in root.iterdir():
        if entry.name == META_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, bytes, Path]]:
    """One standalone node serving chunk c0: (host:port, c0's directory, secret, secret file)."""
    tmp = tmp_path_factory.mktemp("fsspec")
    create_secret(tmp / "secret")
    cluster = Cluster(tmp, tmp / "secret")
    try:
        node = cluster.start_node("n0", ["c0"], capacity=8 << 20, register=False)
        yield _hostport(node.url), node.chunks["c0"], load_secret(tmp / "secret"), tmp / "secret"
    finally:
        cluster.stop()


@pytest.fixture
def gfs(live: tuple[str, Path, bytes, Path]) -> Iterator[GeryonFileSystem]:
    _, root, secret, _ = live
    _empty(root)
    fs = GeryonFileSystem(secret=secret, skip_instance_cache=True)
    try:
        yield fs
    finally:
        fs.close()


# -- fsspec's own abstract test suites ----------------------------------------------------------

class _Fixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, gfs: GeryonFileSystem) -> GeryonFileSystem:
        return gfs

    @pytest.fixture
    def fs_path(self, live: tuple[str, Path, bytes, Path]) -> str:
        return f"{live[0]}/c0/root"

    @pytest.fixture
    def fs_join(self) -> object:
        return posixpath.join


class TestCopy(_Fixtures, AbstractCopyTests):
    pass


class TestGet(_Fixtures, AbstractGetTests):
    pass


class TestPut(_Fixtures, AbstractPutTests):
    pass


class TestOpen(_Fixtures, AbstractOpenTests):
    pass


class TestPipe(_Fixtures, AbstractPipeTests):
    pass


# -- paths ----------------------------------------------------------------------------------------

def test_a_path_names_a_chunk_on_a_node_or_a_disk_by_name() -> None:
    assert split_path("node:8700/c0/job/part-00000") == ("node:8700/c0", "/job/part-00000")
    assert split_path("[::1]:8700/c0") == ("[::1]:8700/c0", "/")
    assert split_path("d0.mbox/a/b") == ("d0.mbox", "/a/b")
    assert GeryonFileSystem._strip_protocol("geryon://n:1/c0/x/") == "n:1/c0/x"


@pytest.mark.parametrize("url, says", [("geryon://", "names no disk"), ("geryon://node:8700", "names no chunk"),
                                       ("geryon://node:8700/", "names no chunk")])
def test_a_url_naming_no_disk_is_one_clear_error(url: str, says: str, secret: bytes) -> None:
    fs = GeryonFileSystem(secret=secret, skip_instance_cache=True)
    with pytest.raises(ValueError, match=says):
        fs.info(url)


# -- reading and writing ------------------------------------------------------------------------

def test_urls_open_through_the_entry_point_and_read_byte_ranges(live: tuple[str, Path, bytes, Path],
                                                                 gfs: GeryonFileSystem) -> None:
    hostport, root, secret, _ = live
    data = bytes(range(256)) * 40_000                       # 10 MB: several read blocks
    (root / "big.bin").write_bytes(data)
    url = f"geryon://{hostport}/c0/big.bin"
    with fsspec.open(url, "rb", secret=secret, block_size=1 << 20, skip_instance_cache=True) as f:
        assert f.size == len(data)
        f.seek(5_000_001)
        assert f.read(10) == data[5_000_001:5_000_011]
        f.seek(17)
        assert f.read(3) == data[17:20]
        f.seek(0)
        assert f.read() == data
    assert gfs.cat_file(url, start=1000, end=1010) == data[1000:1010]
    assert gfs.cat_file(url, start=-5) == data[-5:]
    assert gfs.cat(url) == data


def test_listing_glob_find_and_info(live: tuple[str, Path, bytes, Path], gfs: GeryonFileSystem) -> None:
    hostport, root, _, _ = live
    (root / "job").mkdir()
    for r in range(3):
        (root / "job" / f"part-0000{r}").write_text(PART)
    (root / "job" / "_SUCCESS").write_text("")
    base = f"{hostport}/c0/job"
    assert gfs.ls(f"geryon://{base}", detail=False) == [f"{base}/_SUCCESS"] + [f"{base}/part-0000{r}" for r in range(3)]
    assert gfs.glob(f"geryon://{base}/part-*") == [f"{base}/part-0000{r}" for r in range(3)]
    info = gfs.info(f"{base}/part-00001")
    assert (info["type"], info["size"]) == ("file", len(PART.encode()))
    assert gfs.info(f"{hostport}/c0")["type"] == "directory"
    assert gfs.isdir(base) and gfs.isfile(f"{base}/_SUCCESS")
    assert sorted(gfs.find(f"{hostport}/c0")) == [f"{base}/_SUCCESS"] + [f"{base}/part-0000{r}" for r in range(3)]
    assert gfs.du(base) == 3 * len(PART.encode())
    assert gfs.unstrip_protocol(base) == f"geryon://{base}"


def test_writes_commit_whole_on_close_and_a_failed_with_block_writes_nothing(
        live: tuple[str, Path, bytes, Path], gfs: GeryonFileSystem) -> None:
    hostport, root, _, _ = live
    url = f"geryon://{hostport}/c0/out/new.txt"
    gfs.makedirs(f"{hostport}/c0/out")
    with gfs.open(url, "wb") as f:
        f.write(b"first ")
        assert not (root / "out" / "new.txt").exists()        # nothing on the node until closed
        f.write(b"line\n")
    assert (root / "out" / "new.txt").read_bytes() == b"first line\n"
    with gfs.open(url, "ab") as f:
        f.write(b"second line\n")
    assert gfs.cat(url) == b"first line\nsecond line\n"
    with pytest.raises(RuntimeError), gfs.open(f"{hostport}/c0/out/broken.txt", "wb") as f:
        f.write(b"half of it")
        raise RuntimeError("the writer failed")
    assert not (root / "out" / "broken.txt").exists()
    gfs.mv(url, f"{hostport}/c0/out/moved.txt")
    assert sorted(os.listdir(root / "out")) == ["moved.txt"]
    gfs.rm(f"{hostport}/c0/out", recursive=True)
    assert not (root / "out").exists()


def test_writing_past_the_disk_capacity_is_disk_full_and_leaves_nothing(
        live: tuple[str, Path, bytes, Path], gfs: GeryonFileSystem) -> None:
    hostport, root, _, _ = live
    with pytest.raises(DiskFull):
        with gfs.open(f"{hostport}/c0/huge.bin", "wb") as f:
            f.write(b"x" * (9 << 20))                       # the chunk holds 8 MiB
    assert not (root / "huge.bin").exists()


# -- the PyData tools ------------------------------------------------------------------------------

def test_pandas_reads_a_part_file_through_geryon_urls(live: tuple[str, Path, bytes, Path]) -> None:
    import pandas as pd

    hostport, root, _, secret_file = live
    _empty(root)
    (root / "wc").mkdir()
    (root / "wc" / "part-00000").write_text(PART, encoding="utf-8")
    url = f"geryon://{hostport}/c0/wc/part-00000"
    frame = pd.read_csv(url, sep="\t", header=None, names=["word", "count"],
                        storage_options={"secret_file": str(secret_file), "skip_instance_cache": True})
    assert frame.to_dict("list") == {"word": ["alpha", "beta", "gamma", "z\u00e9ta"], "count": [3, 1, 12, 7]}
    out = f"geryon://{hostport}/c0/wc/summary.csv"
    frame.to_csv(out, index=False, storage_options={"secret_file": str(secret_file), "skip_instance_cache": True})
    assert (root / "wc" / "summary.csv").read_text(encoding="utf-8").splitlines()[0] == "word,count"


def test_the_secret_is_found_as_the_cli_finds_it(live: tuple[str, Path, bytes, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    hostport, root, _, secret_file = live
    _empty(root)
    (root / "part-00000").write_text(PART, encoding="utf-8")
    monkeypatch.setenv("GERYON_SECRET_FILE", str(secret_file))
    GeryonFileSystem.clear_instance_cache()
    try:
        frame = pd.read_csv(f"geryon://{hostport}/c0/part-00000", sep="\t", header=None)
    finally:
        GeryonFileSystem.clear_instance_cache()
    assert list(frame[1]) == [3, 1, 12, 7]


def test_pyarrow_reads_part_files_and_parquet_through_geryon(live: tuple[str, Path, bytes, Path],
                                                             gfs: GeryonFileSystem) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    hostport, root, _, _ = live
    (root / "wc").mkdir()
    for r in range(2):
        (root / "wc" / f"part-0000{r}").write_text(PART, encoding="utf-8")
    parts = ds.dataset(f"{hostport}/c0/wc", filesystem=gfs, format=ds.CsvFileFormat(
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        read_options=pacsv.ReadOptions(column_names=["word", "count"])))
    table = parts.to_table()
    assert table.num_rows == 8 and sum(table.column("count").to_pylist()) == 2 * 23
    words = pa.table({"word": ["a", "b", "c"] * 1000, "n": list(range(3000))})
    pq.write_table(words, f"{hostport}/c0/words.parquet", filesystem=gfs, row_group_size=500)
    back = ds.dataset(f"{hostport}/c0/words.parquet", filesystem=gfs, format="parquet")
    assert back.to_table(columns=["n"], filter=ds.field("n") >= 2990).column("n").to_pylist() == list(range(2990, 3000))


def test_dask_bag_reads_text_through_geryon_urls(live: tuple[str, Path, bytes, Path]) -> None:
    import dask.bag as db

    hostport, root, secret, _ = live
    _empty(root)
    (root / "wc").mkdir()
    for r in range(3):
        (root / "wc" / f"part-0000{r}").write_text(PART, encoding="utf-8")
    bag = db.read_text(f"geryon://{hostport}/c0/wc/part-*", storage_options={"secret": secret})
    lines = bag.map(str.rstrip).compute(scheduler="sync")
    assert sorted(lines) == sorted(PART.splitlines() * 3)


# -- disk names, failover -------------------------------------------------------------------------

def test_disk_names_resolve_through_the_registry_and_fail_over_to_a_replica(
        tmp_path: Path, secret_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    cluster = Cluster(tmp_path, secret_file)
    try:
        cluster.start_registry()
        n0 = cluster.start_node("n0", ["c0"])
        n1 = cluster.start_node("n1", ["c0"])
        for node in (n0, n1):
            (node.chunks["c0"] / "wc").mkdir()
            (node.chunks["c0"] / "wc" / "part-00000").write_text(PART, encoding="utf-8")
        cluster.name_disks("name=d0.wc kfs master=n0!c0 replica=d0.wc.r1\nname=d0.wc.r1 kfs master=n1!c0\n")
        monkeypatch.setenv("GERYON_SECRET_FILE", str(secret_file))
        monkeypatch.setenv("GERYON_REGISTRY", cluster.registry_url)
        with cluster.client() as reg:
            wait_until(lambda: len([s for s in reg.find({"chunk": "*"}) if s.get("addr")]) == 2, 30)
        opts = {"skip_instance_cache": True}
        assert pd.read_csv("geryon://d0.wc/wc/part-00000", sep="\t", header=None,
                           storage_options=opts)[1].sum() == 23
        n0.kill()
        fs = GeryonFileSystem(skip_instance_cache=True, registry=cluster.registry_url)
        try:
            assert fs.cat("geryon://d0.wc/wc/part-00000") == PART.encode()   # read from the replica
            assert fs.ls("d0.wc/wc", detail=False) == ["d0.wc/wc/part-00000"]
            with pytest.raises(NodeUnavailable, match="replicas are read-only"):
                fs.pipe_file("d0.wc/wc/new", b"x")
            with pytest.raises(FileNotFoundError, match="d9.wc"):
                fs.cat("geryon://d9.wc/x")
        finally:
            fs.close()
    finally:
        cluster.stop()


# -- errors -------------------------------------------------------------------------------------

def test_a_missing_file_is_file_not_found_naming_the_url(live: tuple[str, Path, bytes, Path],
                                                          gfs: GeryonFileSystem) -> None:
    import pandas as pd

    hostport, _, secret, _ = live
    url = f"geryon://{hostport}/c0/no/such/part"
    with pytest.raises(FileNotFoundError, match="no/such/part"):
        gfs.open(url, "rb")
    with pytest.raises(FileNotFoundError):
        pd.read_csv(url, sep="\t", storage_options={"secret": secret, "skip_instance_cache": True})
    with pytest.raises(FileNotFoundError, match="no chunk"):
        gfs.cat(f"geryon://{hostport}/c9/x")


def test_a_bad_secret_is_refused_with_a_clear_error(live: tuple[str, Path, bytes, Path]) -> None:
    hostport, root, _, _ = live
    (root / "f").write_bytes(b"x")
    fs = GeryonFileSystem(secret=b"w" * 32, skip_instance_cache=True)
    try:
        with pytest.raises(NodeUnavailable, match="check the cluster secret") as info:
            fs.cat(f"geryon://{hostport}/c0/f")
        assert f"geryon://{hostport}/c0/f" in str(info.value) and "\n" not in str(info.value)
    finally:
        fs.close()


def test_no_configured_secret_is_one_line_naming_geryon_init() -> None:
    GeryonFileSystem.clear_instance_cache()
    with pytest.raises(GeryonError, match="geryon init"):
        fsspec.filesystem("geryon", skip_instance_cache=True)


def test_a_dead_node_is_a_clear_error_naming_it(tmp_path: Path, secret_file: Path, secret: bytes) -> None:
    cluster = Cluster(tmp_path, secret_file)
    try:
        node = cluster.start_node("n0", ["c0"], register=False)
        (node.chunks["c0"] / "f").write_bytes(b"data")
        fs = GeryonFileSystem(secret=secret, skip_instance_cache=True)
        url = f"geryon://{_hostport(node.url)}/c0/f"
        try:
            assert fs.cat(url) == b"data"
            node.proc.send(signal.SIGKILL)
            node.proc.popen.wait(10)
            with pytest.raises(NodeUnavailable) as info:
                fs.cat(url)
            assert url in str(info.value) and "refused" in str(info.value).lower()
        finally:
            fs.close()
    finally:
        cluster.stop()


def test_a_failed_read_is_never_partial_bytes(live: tuple[str, Path, bytes, Path], gfs: GeryonFileSystem) -> None:
    hostport, root, _, _ = live
    (root / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        gfs.cat(f"{hostport}/c0/d")
    with pytest.raises(NotADirectoryError):
        (root / "f").write_bytes(b"x")
        gfs.makedirs(f"{hostport}/c0/f/sub")
    with pytest.raises(FileExistsError):
        gfs.mkdir(f"{hostport}/c0/d")
    assert io.BytesIO(gfs.cat(f"{hostport}/c0/f")).read() == b"x"
