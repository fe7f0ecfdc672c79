"""`idx`: Geryon's word-count mapper: print `word 1` for every word of the input.

The seed (inferno-lab 37, gridlib `fn idx`) is a pipeline:
`tr A-Z a-z | sed 's/[^a-zA-Z0-9_]+/ /g; s/[ \\t][ \\t]*/\\n/g' | sed 's/\\.\\.*$//; /^$/d' | sed 's/$/ 1/'`:
lower-case ASCII letters, split on runs of non-word characters, strip trailing dots, drop
empty words, append ` 1`. Splitting on `[^a-zA-Z0-9_]+` already removes every dot, so
words are exactly the maximal runs of `[a-z0-9_]` in the lower-cased text; that is what
`index_words` finds, with one regex pass over a whole block instead of a pass per line.

Bytes in, bytes out: every byte outside `[a-zA-Z0-9_]` separates words, so a UTF-8
letter such as `é` splits a word exactly as the seed's Unicode regex did (`café` ->
`caf`). Only ASCII letters are lower-cased, as `tr A-Z a-z` did.
`idx FILE...` reads the files in turn, as the seed's `cat $* | ...` did, but indexes each
on its own, so a word never runs from the end of one file into the next (exactly what a
streaming mapper reads on stdin, where every file ends in a newline). A file that cannot
be read is reported and skipped, as cat does. This module does not count; `sort | agg` does.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import BinaryIO

from shell.stream import DEFAULT_BATCH_BYTES, word_blocks

log = logging.getLogger(__name__)

_WORD = re.compile(rb"[a-z0-9_]+")


def index_words(text: bytes) -> list[bytes]:
    """Return the words of `text` in order, lower-cased, as the seed's `idx` splits them."""
    return _WORD.findall(text.lower())


def index_lines(text: bytes) -> bytes:
    """Return `idx`'s output for `text`: one `word 1\\n` line per word."""
    words = index_words(text)
    if not words:
        return b""
    return b" 1\n".join(words) + b" 1\n"


def index(src: BinaryIO, dst: BinaryIO, *, batch_bytes: int = DEFAULT_BATCH_BYTES) -> int:
    """Stream `src` through `index_lines` into `dst`; return the number of words.

    Memory stays near `batch_bytes` (blocks are cut between words; see
    `shell.stream.word_blocks`).
    """
    words = 0
    for block in word_blocks(src, batch_bytes):
        out = index_lines(block)
        if out:
            words += out.count(b"\n")
            dst.write(out)
    log.debug("idx: %d words", words)
    return words


def index_paths(paths: Sequence[str], dst: BinaryIO, stdin: BinaryIO | None = None, *,
                batch_bytes: int = DEFAULT_BATCH_BYTES) -> tuple[int, list[str]]:
    """`idx FILE...`: index each file in turn (`-` is `stdin`); return (words, failures).

    Failures are `PATH: reason` for files that could not be read; the other files are
    still indexed, as cat does.
    """
    words = 0
    failed: list[str] = []
    for path in paths:
        if path == "-" and stdin is not None:
            words += index(stdin, dst, batch_bytes=batch_bytes)
            continue
        try:
            with open(path, "rb") as src:
                words += index(src, dst, batch_bytes=batch_bytes)
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror or exc}")
    return words, failed
