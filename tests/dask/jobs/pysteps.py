"""Two Python steps for the Python API: count (folder, word) pairs, then list the pairs of each
count (step 2 checks it gets the engine's own records: a tuple key, an int count)."""
from geryon import MRStep


def words_by_folder(key, text):
    folder = key.rsplit("/", 1)[0]
    for word in text.split():
        yield (folder, word), 1


def total(key, counts):
    return sum(counts)


def by_count(key, count):
    if type(key) is not tuple or type(count) is not int:
        raise TypeError(f"step 2 got {key!r}: {count!r}, not a tuple and an int")
    yield count, key


def listed(count, keys):
    yield count, sorted(list(k) for k in keys)


def steps(r1=3, r2=2, total_order=False):
    return [MRStep(mapper=words_by_folder, combiner=total, reducer=total, partitions=r1),
            MRStep(mapper=by_count, reducer=listed, partitions=r2, total_order=total_order)]
