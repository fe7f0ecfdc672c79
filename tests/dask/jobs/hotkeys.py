"""A hot key: every line gives the key "hot" (with the line's first 20 characters), and its
first word a cold key (with the line's length). Reduce says how many values each key got and
its first and last three, in the order they reached it (the merge's order)."""


def map(key, value):
    yield "hot", value[:20]
    words = value.split()
    if words:
        yield words[0], len(value)


def reduce(key, values):
    vals = list(values)
    return [len(vals), vals[:3], vals[-3:]]
