"""Word count whose parts read in order are sorted: a partition function of the job's own.

    geryon mapreduce -R 3 examples/wordcount/byletter.py examples/wordcount/reduce.py examples/disks/d0.mbox

`partition(key, n)` (in the map or the reduce script) picks each key's part: here by its first
character's code point, in n equal ranges of a-z (others go first or last), so part 0 holds
the a... words, the last part the ...z words. It must return an int in 0..n-1, else the job
fails naming the key.
"""
from collections import Counter


def map(key, value):
    return Counter(value.split())


def partition(key, n):
    first = key[:1].lower() or "a"
    rank = min(max(ord(first) - ord("a"), -1), 26) + 1   # 0 before a, 1..26 for a-z, 27 after z
    return rank * n // 28
