"""Compressed input: which files are compressed, and their bytes decompressed as a stream.

By extension: `.gz` (and `.tgz`), `.bz2` (`.tbz2`, `.tbz`), `.xz` (`.txz`) with the
standard library; `.zst` (`.tzst`) through the `zstandard` package, imported only when a
zstd file is met. A compressed file is read in one pass from its start, so it is never
cut into byte ranges. Corrupt data raises `BadRecord` naming the file and the compressed
byte offset. Not here: archives (see `archive`), checksums (see `checksum`).
"""
from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import zlib
from typing import Any, BinaryIO

from geryon.records.badrecords import BadRecord, InputError

log = logging.getLogger(__name__)

CODECS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
"""Compression by file extension."""

TAR_SHORTHANDS = {".tgz": "gzip", ".tbz2": "bz2", ".tbz": "bz2", ".txz": "xz", ".tzst": "zstd"}
"""Single extensions that mean a compressed tar archive."""

READ_BLOCK = 1 << 20
"""Bytes asked of a decompressor at a time."""


def codec_of(path: str) -> str | None:
    """The compression of a file by its name (`gzip`, `bz2`, `xz`, `zstd`), or None."""
    lower = path.lower()
    for ext, codec in {**CODECS, **TAR_SHORTHANDS}.items():
        if lower.endswith(ext):
            return codec
    return None


def strip_codec(path: str) -> str:
    """The name a compressed file has once decompressed (`a.txt.gz` -> `a.txt`, `a.tgz` -> `a.tar`)."""
    lower = path.lower()
    for ext in CODECS:
        if lower.endswith(ext):
            return path[: -len(ext)]
    for ext in TAR_SHORTHANDS:
        if lower.endswith(ext):
            return path[: -len(ext)] + ".tar"
    return path


def _decompressor(codec: str, raw: BinaryIO) -> BinaryIO:
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if codec == "bz2":
        return bz2.BZ2File(raw, "rb")  # type: ignore[return-value]
    if codec == "xz":
        return lzma.LZMAFile(raw, "rb")  # type: ignore[return-value]
    if codec == "zstd":
        try:
            import zstandard
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise InputError("reading .zst files needs the zstandard package (pip install zstandard)") from exc
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
    raise ValueError(f"unknown codec {codec!r}")


def _corrupt_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [EOFError, OSError, zlib.error, lzma.LZMAError, ValueError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


class _Decompressed(io.RawIOBase):
    """A decompressed stream whose corrupt-data errors name the file and the offset."""

    def __init__(self, codec: str, raw: BinaryIO, label: str) -> None:
        super().__init__()
        self._raw = raw
        self._codec = codec
        self._label = label
        self._inner = _decompressor(codec, raw)
        self._errors = _corrupt_errors()
        self._out = 0  # decompressed bytes delivered so far

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            n = self._inner.readinto(b)  # type: ignore[attr-defined]
        except InputError:
            raise  # a checksum mismatch underneath: more precise than "corrupt"
        except self._errors as exc:
            raise BadRecord(
                f"{self._label}: corrupt {self._codec} data near compressed byte {self._raw_pos()} "
                f"(after {self._out} decompressed bytes): {exc}", recoverable=False) from exc
        self._out += n or 0
        return n or 0

    def _raw_pos(self) -> int | str:
        try:
            return self._raw.tell()
        except (OSError, ValueError, AttributeError):
            return "?"

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                self._raw.close()
        super().close()


def open_decompressed(raw: BinaryIO, path: str, label: str | None = None) -> BinaryIO:
    """`raw` as a buffered stream of decompressed bytes when `path` is compressed, else as is.

    The returned stream owns `raw` (closing it closes `raw`).
    """
    codec = codec_of(path)
    if codec is None:
        return raw
    return io.BufferedReader(_Decompressed(codec, raw, label or path), READ_BLOCK)  # type: ignore[return-value]


def compress_bytes(data: bytes, codec: str) -> bytes:
    """`data` compressed with `codec` (tests and tools)."""
    if codec == "gzip":
        return gzip.compress(data)
    if codec == "bz2":
        return bz2.compress(data)
    if codec == "xz":
        return lzma.compress(data)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(f"unknown codec {codec!r}")
