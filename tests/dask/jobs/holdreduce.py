"""Word count whose reduce holds one key (-D hold_key=WORD) until the test releases it (see holdmap)."""
from holdmap import hold

from geryon import param


def reduce(key, values):
    if param("hold_key", "") and key == param("hold_key", ""):
        hold(key)
    return sum(values)


def combine(key, values):
    return sum(values)
