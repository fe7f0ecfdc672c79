"""Total-order sort of gensort-style records as a Python job: the first 10 bytes are the key.

Run with --total-order, the parts read in order are sorted by key (README, "Total order"):
    geryon mapreduce --total-order -R 4 --reader lines sort.py sort.py DISK...
Parts hold `key<TAB>value` lines; map.sh and reduce.sh write the records back as they were.
"""


def map(name, line):
    yield line[:10], line[10:]


def reduce(key, values):
    for value in values:   # keys are unique in gensort data, but need not be
        yield key, value
