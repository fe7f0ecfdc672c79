"""Inverted index, map (Geryon's idx): each word of a message, with the message's name.

Words are the seed's: lower-cased runs of [a-z0-9_].
"""
import re

WORD = re.compile(r"[a-z0-9_]+")


def map(key, value):
    for word in set(WORD.findall(value.lower())):
        yield word, key
