"""A map-only job: the lines matching a pattern, in input order (no sort, no reduce).

    geryon mapreduce --reader lines -D pattern='^From:' examples/grep/map.py NONE examples/disks/d0.mbox

One part per map task (`-R 0`, or NONE as the reducer): reading the parts in order gives the
matching lines in the order of the input, keyed by where they were found.
"""
import re

import geryon


def map(key, value):
    if re.search(geryon.param("pattern", ""), value):
        yield key, value
