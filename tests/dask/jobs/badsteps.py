"""Two steps whose second one's reduce is broken: it yields a bare value."""
from geryon import MRStep


def words(key, value):
    for w in value.split():
        yield w, 1


def total(key, values):
    return sum(values)


def broken(key, values):
    yield 5


def steps():
    return [MRStep(mapper=words, combiner=total, reducer=total, partitions=3),
            MRStep(reducer=broken, partitions=2)]
