"""WARC: files written with warcio read back record for record, load cut at records."""
from __future__ import annotations

import gzip
import io
import pathlib

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from geryon.records.badrecords import BadRecord, SkipBudget
from geryon.disks.chunk import ChunkFS
from geryon.ingest.load import load
from geryon.records.readers import read_records
from geryon.records.split import FileRange, Split, list_files, plan_balanced

RECORDS = 200


def _write_warc(path: pathlib.Path, gz: bool) -> list[tuple[str, bytes]]:
    """A WARC of responses and resources; returns (WARC-Record-ID, payload) in order."""
    want = []
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=gz)
        for i in range(RECORDS):
            payload = (f"<html><body>page {i} ".encode() + b"word " * (i % 40) + b"</body></html>\n")
            if i % 3:
                headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.0")
                rec = writer.create_warc_record(f"http://example.org/{i}", "response",
                                                payload=io.BytesIO(payload), length=len(payload),
                                                http_headers=headers)
            else:
                rec = writer.create_warc_record(f"http://example.org/r{i}", "resource",
                                                payload=io.BytesIO(payload), length=len(payload),
                                                warc_content_type="text/plain")
            writer.write_record(rec)
            want.append((rec.rec_headers.get_header("WARC-Record-ID"), payload))
    return want


def _read(root: str, name: str = "d", on_bad=None) -> list[tuple[object, object]]:
    disk = ChunkFS(root)
    try:
        return [r for s in plan_balanced(name, list_files(disk), 1)
                for r in read_records(disk, s, "auto", root, on_bad=on_bad)]
    finally:
        disk.close()


@pytest.mark.parametrize("gz", [False, True], ids=["warc", "warc.gz"])
def test_warc_reads_back_record_for_record(tmp_path, gz):
    d = tmp_path / "d"
    d.mkdir()
    want = _write_warc(d / ("crawl.warc.gz" if gz else "crawl.warc"), gz)
    assert _read(str(d)) == want


def test_load_cuts_warc_at_records(tmp_path):
    src = tmp_path / "crawl.warc.gz"
    want = _write_warc(src, gz=True)
    report = load([str(src)], "crawl", chunk_size=16 << 10, to=str(tmp_path / "disks"),
                  ndb_file=str(tmp_path / "ndb"))
    assert len(report.disks) > 2
    got = [r for disk in report.disks for r in _read(disk.path, disk.name)]
    assert got == want
    assert all((pathlib.Path(disk.path) / "crawl.warc").stat().st_size <= 16 << 10 for disk in report.disks)


def test_bad_warc_header_names_the_record(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write_warc(tmp_path / "ok.warc", gz=False)
    data = (tmp_path / "ok.warc").read_bytes()
    second = data.index(b"WARC/1", 10)
    (d / "bad.warc").write_bytes(data[:second] + b"GARBAGE/1.0\r\n" + data[second + 10:])
    with pytest.raises(BadRecord, match=r"d:bad.warc: bad WARC record 1"):
        _read(str(d))
    budget = SkipBudget(1)
    assert len(_read(str(d), on_bad=budget)) == 1 and budget.skipped == 1
    with pytest.raises(BadRecord, match=rf"record 1 at byte {second}: no WARC version line"):
        load([str(d / "bad.warc")], "bad", to=str(tmp_path / "disks"), ndb_file=str(tmp_path / "ndb"))


def test_corrupt_gzip_member_is_reported_with_an_offset(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    blob = gzip.compress(b"some words here\n" * 20000)
    mid = len(blob) // 2
    (d / "t.txt.gz").write_bytes(blob[:mid] + bytes([blob[mid] ^ 0xFF]) + blob[mid + 1:])
    split = Split("d", (FileRange("/t.txt.gz", 0, len(blob)),))
    disk = ChunkFS(str(d))
    with pytest.raises(BadRecord, match=r"d:t.txt.gz: corrupt gzip data near compressed byte \d+"):
        list(read_records(disk, split, "lines", str(d)))
    disk.close()
