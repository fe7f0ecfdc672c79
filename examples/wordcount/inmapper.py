"""Word count with per-task hooks (mrjob's mapper_init/mapper_final): in-mapper combining.

    geryon mapreduce examples/wordcount/inmapper.py examples/wordcount/reduce.py examples/disks/d0.mbox

`map_init` runs once per map task before its first record, `map_final` once after its last;
either may return or yield (key, value) pairs. Here map only counts, and map_final emits each
word once per task with its count, so no combiner is needed. (`reduce_init`/`reduce_final`
do the same around a reduce task's keys.)
"""
from collections import Counter

counts: Counter = Counter()


def map_init():
    counts.clear()


def map(key, value):
    counts.update(value.split())


def map_final():
    return counts
