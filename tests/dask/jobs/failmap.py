"""Word count whose map fails on a record holding the word "sixty" (a user's bug)."""
from collections import Counter


def parse_record(value):
    if "sixty" in value.split():
        raise ValueError("cannot parse a record that says sixty")
    return value.split()


def map(key, value):
    return Counter(parse_record(value))
