"""Word count whose map says on stderr what it looks at. On the input file named by
-D hold_on=NAME it says so, then waits for DIR/release (-D dir=DIR) before it counts: the test
sees the line on the driver's stderr while the attempt still runs. -D loud=NAME prints
-D lines=N numbered lines on stderr for that file instead."""
import os
import sys
import time
from collections import Counter

from geryon import param

HOLD_DEADLINE = 120.0


def map(key, value):
    key = str(key)
    if param("hold_on", "") and key.endswith(param("hold_on", "")):
        print(f"holding at {key}", file=sys.stderr, flush=True)
        end = time.monotonic() + HOLD_DEADLINE
        while not os.path.exists(os.path.join(param("dir"), "release")) and time.monotonic() < end:
            time.sleep(0.05)
    elif param("loud", "") and key.endswith(param("loud", "")):
        for i in range(int(param("lines", "0"))):
            print(f"loud line {i:08d} " + "x" * 60, file=sys.stderr)
    print(f"counted {key}", file=sys.stderr)
    return Counter(value.split())
