"""Word count, reduce (and combine): the total of a word's counts."""


def reduce(key, values):
    return sum(values)


combine = reduce
