"""Generated text for the memory benchmark: many distinct words, so that sort buffers fill.

`python bench/memory/corpus.py DIR MB [SEED]` writes MB files of 1 MiB each under DIR: lines
of words drawn from a Zipf-like vocabulary of 100,000 words, each line also holding two
words seen nowhere else (so the number of distinct keys grows with the input, as in a
crawl or a source tree: about 25,000 new keys per MiB).
"""
from __future__ import annotations

import itertools
import os
import random
import sys

FILE_BYTES = 1 << 20


def write_corpus(out: str, megabytes: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(3, 10))) for _ in range(100_000)]
    weights = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(vocab))))
    pool = [" ".join(rng.choices(vocab, cum_weights=weights, k=8)) for _ in range(20_000)]
    unique = itertools.count()
    os.makedirs(out, exist_ok=True)
    for i in range(megabytes):
        lines = rng.choices(pool, k=FILE_BYTES // 64)
        n = next(unique)
        text = "\n".join(f"{line} q{n:x}x{j:x} z{j:x}y{n:x}" for j, line in enumerate(lines))
        with open(os.path.join(out, f"f{i:05d}.txt"), "w") as f:
            f.write(text[:FILE_BYTES].rsplit("\n", 1)[0] + "\n")


if __name__ == "__main__":
    write_corpus(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
