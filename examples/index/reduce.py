"""Inverted index, reduce: the sorted, distinct names of the messages holding a word."""


def reduce(key, values):
    return " ".join(sorted(set(values)))
