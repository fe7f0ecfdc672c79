"""Keys and values on the wire and on disk: the intermediate format and the output formats.

Intermediate data is msgpack (safe: no code runs on decode, unlike pickle), written as
blocks of parallel arrays so that packing and unpacking stay in C. Output part files are
text (`key<TAB>value` lines, Hadoop Streaming's TextOutputFormat) or JSON (mrjob's
JSONProtocol, exact round trip). This module does no I/O of its own.
"""
from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import msgpack

from geryon.errors import GeryonError

log = logging.getLogger(__name__)

FORMATS = ("text", "json")
"""Output formats a job can write."""

PAIRS = "pairs"
"""The format between two steps of a multi-step job (`geryon.mapreduce.steps`): the parts hold the
records as the engine's own msgpack blocks (`pack_block`), read back exactly by the `pairs`
reader; never a user's choice of output."""


class RecordError(GeryonError):
    """A key or value is of a type Geryon cannot carry between map and reduce."""


# Keys and values carried between phases: str, bytes, int, float, bool, None and
# lists of them (tuples travel as lists, as in JSON).
def pack_block(single: bool, keys: list, values: list) -> bytes:
    """Encode one block of sorted records: `values[i]` is a value (single) or a list."""
    try:
        return msgpack.packb((single, keys, values), use_bin_type=True, unicode_errors="surrogateescape")
    except (TypeError, ValueError, OverflowError) as exc:
        bad = _first_unpackable(keys, values)
        raise RecordError(f"cannot carry {bad!r} between map and reduce: {exc}") from exc


def _first_unpackable(keys: list, values: list) -> object:
    for item in (*keys, *values):
        try:
            msgpack.packb(item, use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            return item
    return "?"


def unpack_blocks(data: bytes) -> Iterator[tuple[bool, list, list]]:
    """Decode the blocks written by `pack_block`, one after the other."""
    unpacker = msgpack.Unpacker(use_list=True, raw=False, max_buffer_size=0, strict_map_key=False, unicode_errors="surrogateescape")
    unpacker.feed(data)
    for single, keys, values in unpacker:
        yield single, keys, values


def block_stream(chunks: Iterable[bytes]) -> Iterator[tuple[bool, list, list]]:
    """Decode blocks from an iterable of byte chunks (a file or an HTTP body)."""
    unpacker = msgpack.Unpacker(use_list=True, raw=False, max_buffer_size=0, strict_map_key=False, unicode_errors="surrogateescape")
    for chunk in chunks:
        unpacker.feed(chunk)
        yield from unpacker


def raw_block_stream(chunks: Iterable[bytes]) -> Iterator[tuple[bool, list, list]]:
    """Like `block_stream`, but str keys and values come back as their UTF-8 bytes.

    Only for blocks known to hold str keys (then bytes order is code-point order): the
    decode, the sort's comparisons and the output's encode all get cheaper.
    """
    unpacker = msgpack.Unpacker(use_list=True, raw=True, max_buffer_size=0, strict_map_key=False)
    for chunk in chunks:
        unpacker.feed(chunk)
        yield from unpacker


def freeze(obj: Any) -> Any:
    """Make a key hashable: lists become tuples, recursively."""
    if type(obj) is list:
        return tuple(freeze(x) for x in obj)
    return obj


# --- output formats -------------------------------------------------------------------

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def text_field(obj: Any) -> str:
    """Render a key or value as Hadoop Streaming would: str as is, numbers in decimal.

    A str holding a tab, newline or carriage return is written with backslash escapes
    so that every record stays one line. Text is the format for people and Unix tools and
    it is lossy (such keys read back escaped; every type reads back as str); the json
    format round-trips exactly. Bytes are decoded as UTF-8 (surrogateescape); lists and
    tuples are written as JSON arrays.
    """
    t = type(obj)
    if t is str:
        if "\t" in obj or "\n" in obj or "\r" in obj:
            return obj.translate(_ESCAPES)
        return obj
    if t is int or t is float:
        return repr(obj)
    if t is bytes:
        return text_field(obj.decode("utf-8", "surrogateescape"))
    if t is bool or obj is None:
        return json.dumps(obj)
    if t in (list, tuple):
        return json.dumps(obj, ensure_ascii=False, default=_json_default)
    return text_field(str(obj))


BYTES_TAG = "b64"
"""JSON output: bytes are written as `{"b64": "<base64>"}`. Keys and values are never dicts
otherwise, so the object marks bytes unambiguously and `parse_line` gives the bytes back."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "surrogateescape")
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _json_exact(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return {BYTES_TAG: base64.b64encode(obj).decode("ascii")}
    return _json_default(obj)


def _json_object(d: dict[str, Any]) -> Any:
    if len(d) == 1 and BYTES_TAG in d and isinstance(d[BYTES_TAG], str):
        return base64.b64decode(d[BYTES_TAG])
    return d


def json_field(obj: Any) -> str:
    """Render a key or value as compact JSON (mrjob's JSONProtocol), exactly: bytes (also
    inside lists) as `{"b64": ...}` (`BYTES_TAG`), which `parse_line` turns back into bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_json_exact)


def format_lines(keys: list, values: list, fmt: str) -> str:
    """Render records as output lines in `fmt` ("text" or "json")."""
    if fmt == "json":
        jf = json_field
        return "".join([f"{jf(k)}\t{jf(v)}\n" for k, v in zip(keys, values)])
    tf = text_field
    if _plain_str(keys) and _plain_str_or_int(values):
        # The common case (word counts): one C-level format per record.
        return "".join(map("{}\t{}\n".format, keys, values))
    return "".join([f"{tf(k)}\t{tf(v)}\n" for k, v in zip(keys, values)])


def format_bytes_lines(keys: list[bytes], values: list) -> bytes | None:
    """Text lines for UTF-8 bytes keys and int values, or None when that does not apply."""
    if set(map(type, values)) - {int}:
        return None
    joined = b"\x00".join(keys)
    if b"\t" in joined or b"\n" in joined or b"\r" in joined:
        return None
    return b"".join(map(b"%s\t%d\n".__mod__, zip(keys, values)))


def _plain_str(items: list) -> bool:
    """All str, none holding a tab, newline or CR (checked in C, on one joined string)."""
    if set(map(type, items)) - {str}:
        return False
    joined = "\x00".join(items)
    return "\t" not in joined and "\n" not in joined and "\r" not in joined


def _plain_str_or_int(items: list) -> bool:
    types = set(map(type, items))
    if types <= {int}:
        return True
    return types <= {str} and _plain_str(items)


def encode_records(keys: list, values: list, fmt: str) -> bytes:
    """Records as a part file's bytes: `format_lines` in UTF-8, or one msgpack block for `PAIRS`.

    Raises:
        RecordError: `PAIRS`, and a key or value msgpack cannot carry (named).
    """
    if fmt == PAIRS:
        try:
            return pack_block(True, keys, values)
        except RecordError as exc:
            raise RecordError(str(exc).replace("between map and reduce", "to the next step", 1)) from exc
    return format_lines(keys, values, fmt).encode("utf-8", "surrogateescape")


def parse_line(line: str, fmt: str) -> tuple[Any, Any]:
    """Parse one output line back into (key, value): exact for json, str fields for text."""
    line = line[:-1] if line.endswith("\n") else line
    key, sep, value = line.partition("\t")
    if fmt == "json":
        return (freeze(json.loads(key, object_hook=_json_object)),
                json.loads(value, object_hook=_json_object) if sep else None)
    return key, value
