"""Word count whose map holds one input file (-D hold_on=NAME) until the test releases it.

Only the first attempt to reach it holds: it writes its parent's pid (the Dask worker's) to
DIR/held and waits for DIR/release (-D dir=DIR); any later attempt counts at once.
"""
import os
import time
from collections import Counter

from geryon import param

HOLD_DEADLINE = 120.0


def hold(what):
    marker = os.path.join(param("dir"), "held")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getppid()} {what}".encode())
    os.close(fd)
    end = time.monotonic() + HOLD_DEADLINE
    while not os.path.exists(os.path.join(param("dir"), "release")) and time.monotonic() < end:
        time.sleep(0.05)


def map(key, value):
    name = param("hold_on", "")
    if name and str(key).endswith(name):
        hold(key)
    return Counter(value.split())
