"""Word count, map: every whitespace-separated word of a record, with its count."""
from collections import Counter


def map(key, value):
    # A mapping's items are the pairs: Counter counts in C.
    return Counter(value.split())
