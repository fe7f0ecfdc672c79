"""A multi-step job script whose steps partition and order their keys as they say (copied into
a job directory and run by tests/engine/test_engine_steps.py and tests/faults/test_faults_steps.py).

Step 1 (streaming) keys each word by two fields, `letter<TAB>word` (key_fields=2), and partitions by
the letter alone (partition_fields=1): one reducer gets all of a letter's words, in word order, and
prints `letter<TAB>w1 w2 ...`. Step 2 (Python) ranks each word within its letter's line, keys it by
its length, partitions by `length % n` (its own `partition`) and has its values sorted
(`sort_values`): a letter split over two reducers, or words out of order, change the ranks.
"""
from geryon import MRStep

WORDS = r"""tr -cs 'A-Za-z' '\n' | awk 'length($0) > 0 {print substr($0, 1, 1) "\t" $0 "\t1"}'"""

# lines `letter<TAB>word<TAB>1` in key order: a letter's distinct words, joined, once per letter
LETTERS = (r"""awk -F'\t' '$1 != l {if (NR > 1) print l "\t" w; l = $1; w = ""; p = ""} """
           r"""$2 != p {w = w (w == "" ? "" : " ") $2; p = $2} END {if (NR) print l "\t" w}'""")


def ranked(letter, words):       # after a streaming step: letter<TAB>words, split at the tab
    for rank, word in enumerate(words.split()):
        yield len(word), [letter, rank, word]


def length_mod(key, n):
    return key % n


def by_length(length, values):   # sort_values: the values come sorted
    yield length, list(values)


STEPS = [MRStep(mapper_cmd=WORDS, reducer_cmd=LETTERS, key_fields=2, partition_fields=1, partitions=3),
         MRStep(mapper=ranked, reducer=by_length, partition=length_mod, sort_values=True, partitions=2)]


def reference(texts):
    """What the job writes, sequentially: {part index: [(length, [[letter, rank, word], ...]), ...]}."""
    import re

    letters = {}
    for text in texts:
        for word in re.findall(r"[A-Za-z]+", text):
            letters.setdefault(word[0], set()).add(word)
    lengths = {}
    for letter, words in letters.items():
        for rank, word in enumerate(sorted(words)):
            lengths.setdefault(len(word), []).append([letter, rank, word])
    parts = {0: [], 1: []}
    for length in sorted(lengths):
        parts[length % 2].append((length, sorted(lengths[length])))
    return parts
