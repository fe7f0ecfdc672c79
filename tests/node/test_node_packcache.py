"""A node's pack cache stays under its size: least recently used packs go first, never one in use."""
from __future__ import annotations

import os
import pathlib
import time

from geryon.mapreduce import jobpack
from geryon.mapreduce.job import Job, step_from_arg
from geryon.node.packcache import PackCache


def _pack(tmp_path: pathlib.Path, n: int) -> jobpack.JobPack:
    d = tmp_path / f"job{n}"
    d.mkdir()
    (d / "map.py").write_text(f"# job {n}\n" + "#" * 2000 + "\ndef map(k, v):\n    return []\n")
    return jobpack.build(Job(map=step_from_arg(str(d / "map.py"), "map")))


def test_least_recently_used_packs_are_pruned_past_the_bound(tmp_path):
    packs = [_pack(tmp_path, n) for n in range(4)]
    cache = PackCache(str(tmp_path / "cache"), max_bytes=1 << 30, min_idle=0)
    now = time.time()
    for age, p in zip((400, 300, 200, 100), packs[:3]):
        path = cache.put(p.data, p.digest)
        os.utime(path, (now - age, now - age))
    one = sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())
    cache.max_bytes = int(3.5 * one)   # room for three packs
    assert cache.has(packs[0].digest)          # a use: now the most recent
    with cache.using(packs[1].digest):
        cache.put(packs[3].data, packs[3].digest)
        present = {p.digest for p in packs if os.path.isdir(cache.path(p.digest))}
    # pack 2 was the least recently used one not in use
    assert present == {packs[0].digest, packs[1].digest, packs[3].digest}
    cache.max_bytes = int(2.5 * one)
    assert cache.prune() == [packs[0].digest]  # used before pack 1 was, and pack 3 came
    assert not cache.has(packs[0].digest)


def test_recently_used_packs_stay_whatever_the_size(tmp_path):
    packs = [_pack(tmp_path, n) for n in range(3)]
    cache = PackCache(str(tmp_path / "cache"), max_bytes=1, min_idle=600)
    for p in packs:
        cache.put(p.data, p.digest)
    assert all(cache.has(p.digest) for p in packs)
    assert sorted(cache.prune(now=time.time() + 601)) == sorted(p.digest for p in packs)
