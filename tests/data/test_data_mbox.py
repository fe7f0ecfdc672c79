"""Mbox: a few thousand messages written with Python's `mailbox` load and read one per record."""
from __future__ import annotations

import io
import mailbox
import pathlib
import random
from email.message import EmailMessage

import pytest

from geryon.disks.chunk import ChunkFS
from geryon.ingest.load import load
from geryon.records.mbox import iter_raw_messages, message_body, message_id
from geryon.records.readers import read_records
from geryon.records.split import FileRange, Split, list_files, plan_balanced

MESSAGES = 3000


def _message(rng: random.Random, i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"user{rng.randrange(50)}@example.org"
    msg["To"] = "list@example.org"
    msg["Subject"] = f"message {i}"
    if i % 7 != 3:  # some messages have no Message-ID
        msg["Message-ID"] = f"<{i}.{rng.randrange(10**6)}@example.org>"
    lines = [" ".join(rng.choice(["chunk", "disk", "From", "registry", "map", "reduce"]) for _ in range(8))
             for _ in range(rng.randint(1, 12))]
    lines.insert(rng.randrange(len(lines) + 1), "From the start of a body line, quoted by mailbox")
    if i % 11 == 0:
        lines.append(">From an already quoted line")
    msg.set_content("\n".join(lines) + "\n")
    return msg


@pytest.fixture(scope="module")
def mbox_file(tmp_path_factory) -> tuple[pathlib.Path, list[EmailMessage]]:
    path = tmp_path_factory.mktemp("mbox") / "list.mbox"
    rng = random.Random(40)
    box = mailbox.mbox(str(path))
    messages = [_message(rng, i) for i in range(MESSAGES)]
    box.lock()
    for m in messages:
        box.add(m)
    box.flush()
    box.unlock()
    box.close()
    return path, messages


def _records(disk_path: str, name: str = "d") -> list[tuple[object, object]]:
    disk = ChunkFS(disk_path)
    try:
        out = []
        for s in plan_balanced(name, list_files(disk), 1):
            out.extend(read_records(disk, s, "auto", disk_path))
        return out
    finally:
        disk.close()


def test_mailbox_written_messages_read_one_per_record(mbox_file):
    path, messages = mbox_file
    records = _records(str(path.parent))
    assert len(records) == MESSAGES
    box = mailbox.mbox(str(path))
    python_view = list(box)
    box.close()
    for i, ((key, value), original, parsed) in enumerate(zip(records, messages, python_view)):
        want_key = original["Message-ID"] or f"d/list.mbox#{i}"
        assert key == want_key
        # mailbox writes mboxo: "From " is quoted, ">From " is not, so reading (mboxrd)
        # cannot tell an original ">From " line from a quoted "From " one.
        want = original.as_string().replace("\n>From an already", "\nFrom an already")
        assert value == want, i  # the quoting that mailbox added is undone
        assert "From the start of a body line" in value
        assert parsed["Subject"] == f"message {i}"


def test_load_cuts_at_messages_and_keeps_them_whole(mbox_file, tmp_path):
    path, messages = mbox_file
    report = load([str(path)], "mail", chunk_size=128 << 10, to=str(tmp_path / "disks"),
                  ndb_file=str(tmp_path / "ndb"))
    assert len(report.disks) > 3
    keys: list[object] = []
    values: list[object] = []
    for d in report.disks:
        assert (pathlib.Path(d.path) / "list.mbox").stat().st_size <= 128 << 10
        recs = _records(d.path, d.name)
        keys += [k for k, _ in recs]
        values += [v for _, v in recs]
    assert len(keys) == MESSAGES
    assert values == [m.as_string().replace("\n>From an already", "\nFrom an already") for m in messages]
    with_id = [m["Message-ID"] for m in messages if m["Message-ID"]]
    assert [k for k in keys if not str(k).startswith("d")] == with_id


def test_parser_streams_and_needs_a_blank_line_before_from():
    text = (b"From a@b Mon Jan  1 00:00:00 2024\nMessage-ID: <1@x>\n\nbody\nFrom inside a paragraph\n\n"
            b"From b@c Mon Jan  1 00:00:00 2024\nmessage-id:\n <2@x>\n\n>>From quoted twice\n")
    msgs = list(iter_raw_messages(io.BufferedReader(io.BytesIO(text))))
    assert [m.number for m in msgs] == [0, 1] and [m.offset for m in msgs] == [0, text.index(b"From b@c")]
    assert message_body(msgs[0].data) == b"Message-ID: <1@x>\n\nbody\nFrom inside a paragraph\n"
    assert message_id(message_body(msgs[1].data)) == "<2@x>"
    assert message_body(msgs[1].data).endswith(b"\n>From quoted twice\n")


def test_undecodable_message_is_a_bad_record_with_its_position(tmp_path):
    from geryon.records.badrecords import BadRecord, SkipBudget

    d = tmp_path / "d"
    d.mkdir()
    good = b"From a Mon Jan  1 00:00:00 2024\nSubject: ok\n\nfine\n\n"
    bad = b"From b Mon Jan  1 00:00:00 2024\nSubject: bad\n\n\xff\xfe\n\n"
    (d / "m.mbox").write_bytes(good + bad + good)
    split = Split("d", (FileRange("/m.mbox", 0, (d / "m.mbox").stat().st_size),))
    disk = ChunkFS(str(d))
    with pytest.raises(BadRecord, match=rf"d:m.mbox: message 1 at byte {len(good)}: not UTF-8"):
        list(read_records(disk, split, "mbox", str(d)))
    budget = SkipBudget(1)
    assert [k for k, _ in read_records(disk, split, "mbox", str(d), on_bad=budget)] == ["d/m.mbox#0", "d/m.mbox#2"]
    assert budget.skipped == 1
    disk.close()


@pytest.mark.parametrize("codec,ext", [("gzip", "gz"), ("xz", "xz"), ("zstd", "zst")])
def test_compressed_mbox_reads_the_same_messages(mbox_file, tmp_path, codec, ext):
    from geryon.records.compression import compress_bytes

    path, _ = mbox_file
    d = tmp_path / "d"
    d.mkdir()
    (d / f"list.mbox.{ext}").write_bytes(compress_bytes(path.read_bytes(), codec))
    plain = [v for _, v in _records(str(path.parent))]
    assert [v for _, v in _records(str(d))] == plain
