"""A two-step job (mrjob's steps()): the N most frequent words of each directory.

    geryon mapreduce -D top=3 examples/topwords/topwords.py examples/topwords/data

Step 1 counts each (directory, word) pair, a combiner summing on the map side; step 2 takes each
count to its directory and keeps the top N (`-D top=N`, default 3), most frequent first, ties in
word order. The counts go from step 1 to step 2 as the engine's own records: the keys stay
(directory, word) pairs and the counts ints, never a round trip through text. Each step has its
own R; step 2 asks for its values sorted (sort_values), so `top` reads only the first N.
"""
import itertools
import re

import geryon
from geryon import MRStep

WORD = re.compile(r"[a-z']+")


def count_words(key, text):
    folder = key.rsplit("/", 1)[0]    # key: DISK/PATH of the file
    for word in WORD.findall(text.lower()):
        yield (folder, word), 1


def total(key, counts):
    return sum(counts)


def to_folder(key, count):
    folder, word = key
    yield folder, (-count, word)     # sorted values: the most frequent first, then by word


def top(folder, ranked):
    n = int(geryon.param("top", "3"))
    yield folder, [[word, -negative] for negative, word in itertools.islice(ranked, n)]


def steps():
    return [MRStep(mapper=count_words, combiner=total, reducer=total, partitions=4),
            MRStep(mapper=to_folder, reducer=top, partitions=2, sort_values=True)]
