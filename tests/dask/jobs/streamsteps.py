"""Three steps: a streaming word count, a Python map-only swap (it reads the text lines the
streaming step wrote), a streaming sort by count."""
from geryon import MRStep


def swap(key, value):            # after a streaming step: key<TAB>value text, split at the tab
    yield int(value), key


def steps():
    return [
        MRStep(mapper_cmd="tr -s ' ' '\\n' | sed -e '/^$/d' -e 's/$/\t1/'",
               reducer_cmd="awk -F'\t' '{n[$1]+=$2} END {for (w in n) print w \"\t\" n[w]}'", partitions=3),
        MRStep(mapper=swap, partitions=2, reducer=None),
        MRStep(mapper_cmd="cat", reducer_cmd="LC_ALL=C sort -k1,1n -k2", partitions=1),
    ]
