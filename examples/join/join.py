"""A reduce-side join through secondary sort (mrjob's SORT_VALUES): users joined to their orders.

    geryon mapreduce --reader lines -R 2 examples/join/join.py examples/join/join.py examples/join/data

Input lines are `users<TAB>ID<TAB>NAME` or `orders<TAB>ID<TAB>ITEM`. The map keys both by ID
and tags the value, 0 for a user, 1 for an order; with `sort_values = True` each ID's values
reach reduce sorted, so the user comes first and its orders can stream past, never held.
"""

sort_values = True


def map(key, value):
    kind, ident, rest = value.rstrip("\n").split("\t", 2)
    yield ident, [0 if kind == "users" else 1, rest]


def reduce(key, values):
    name = None
    for tag, rest in values:
        if tag == 0:
            name = rest
        elif name is not None:   # an order of a known user
            yield name, rest
