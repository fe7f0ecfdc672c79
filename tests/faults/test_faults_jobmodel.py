"""The job model beyond map + reduce on a real cluster (registry and three node daemons as
processes), from the CLI and the Python API, for Python and streaming jobs: each output equals
the same job's in local mode, and the sequential reference. (Local-mode detail and bad input:
tests/engine/test_engine_jobmodel.py.)"""
from __future__ import annotations

from tests.faults.fault_helpers import FaultCluster, both_modes, input_lines

LINES_PY = '''
import geryon

def map(key, value):
    for line in value.splitlines():
        yield line[::-1] + geryon.params().get("mark", ""), len(line)
'''


def test_map_only_on_the_cluster_cli_and_api(fault_cluster: FaultCluster) -> None:
    from geryon.mapreduce.job import Job, load_script
    from registry.auth import load_secret
    from registry.client import RegistryClient

    c = fault_cluster
    job_dir = c.tmp / "job dir"
    job_dir.mkdir()
    (job_dir / "lines.py").write_text(LINES_PY)
    lines = input_lines(c)
    # Python, from the CLI, with a parameter
    cluster, local = both_modes(c, job_dir, "lines", "--split-size", "32K", "-D", "mark=!", "lines.py", "NONE")
    assert cluster == local and len(cluster) > len(c.corpus)
    got = [ln for part in cluster for ln in part.decode().splitlines()]
    assert got == [f"{ln[::-1]}!\t{len(ln)}" for ln in lines]
    # streaming, -R 0
    cluster, local = both_modes(c, job_dir, "upper", "--split-size", "32K", "--reader", "lines", "-R", "0",
                           "{ tr a-z A-Z }", "NONE")
    assert cluster == local
    assert [ln for part in cluster for ln in part.decode().splitlines()] == [ln.upper() for ln in lines]
    # the Python API
    script = load_script(str(job_dir / "lines.py"))
    job = Job(map=script.map, partitions=0, name="api", format="json", split_size=32 << 10)
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        pairs = list(result)
    assert len(result.parts) == result.report.map.tasks
    assert pairs == [(ln[::-1], len(ln)) for ln in lines]


HOOKS_PY = '''
from collections import Counter

counts = Counter()

def map_init():
    counts.clear()
    yield "#map_init", 1

def map(key, value):
    counts.update(value.split())

def map_final():
    yield "#map_final", 1
    yield from counts.items()

def reducer_init():
    return [("#reduce_init", 1)]

def reduce(key, values):
    return sum(values)

def reduce_final():
    yield "#reduce_final", 1
'''


def test_hooks_on_the_cluster_cli_and_api(fault_cluster: FaultCluster) -> None:
    from geryon.mapreduce.job import Job, load_script
    from registry.auth import load_secret
    from registry.client import RegistryClient
    from tests.faults.fault_helpers import word_counts

    c = fault_cluster
    job_dir = c.tmp / "hooks"
    job_dir.mkdir()
    (job_dir / "hooks.py").write_text(HOOKS_PY)
    cluster, local = both_modes(c, job_dir, "hooks", "-R", "3", "--split-size", "32K", "hooks.py", "hooks.py")
    assert cluster == local and len(cluster) == 3
    counts: dict[str, int] = {}
    for part in cluster:
        lines = part.decode().splitlines()
        assert lines[0] == "#reduce_init\t1" and lines[-1] == "#reduce_final\t1"
        counts.update((k, int(v)) for k, v in (ln.split("\t") for ln in lines[1:-1]))
    maps = counts.pop("#map_init")
    assert counts.pop("#map_final") == maps >= len(c.corpus)
    assert counts == dict(word_counts(c.corpus))
    script = load_script(str(job_dir / "hooks.py"))
    job = Job(map=script.map, reduce=script.reduce, map_init=script.map_init, map_final=script.map_final,
              reduce_init=script.reducer_init, reduce_final=script.reduce_final, partitions=2, name="api",
              format="json", split_size=32 << 10)
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        pairs = list(result)
    assert [k for k, _ in pairs].count("#reduce_init") == 2 == [k for k, _ in pairs].count("#reduce_final")
    got = dict(kv for kv in pairs if kv[0] not in ("#reduce_init", "#reduce_final"))
    assert got.pop("#map_init") == got.pop("#map_final") == result.report.map.tasks
    assert got == dict(word_counts(c.corpus))


PARTITION_PY = '''
from collections import Counter

def map(key, value):
    return Counter(value.split())

def reduce(key, values):
    return sum(values)

def partition(key, n):
    return (len(key) + ord(key[0])) % n
'''


def test_partition_function_on_the_cluster_cli_and_api(fault_cluster: FaultCluster) -> None:
    from geryon.mapreduce.job import Job, load_script
    from registry.auth import load_secret
    from registry.client import RegistryClient
    from tests.faults.fault_helpers import word_counts

    c = fault_cluster
    job_dir = c.tmp / "part"
    job_dir.mkdir()
    (job_dir / "part.py").write_text(PARTITION_PY)
    cluster, local = both_modes(c, job_dir, "part", "-R", "3", "part.py", "part.py")
    assert cluster == local and len(cluster) == 3
    counts: dict[str, int] = {}
    for r, data in enumerate(cluster):
        pairs = [ln.split("\t") for ln in data.decode().splitlines()]
        assert pairs and all((len(k) + ord(k[0])) % 3 == r for k, _ in pairs)
        counts.update((k, int(v)) for k, v in pairs)
    assert counts == dict(word_counts(c.corpus))
    script = load_script(str(job_dir / "part.py"))
    job = Job(map=script.map, reduce=script.reduce, partition=script.partition, partitions=2, name="api",
              format="json")
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        assert len(result.parts) == 2
        assert dict(result) == dict(word_counts(c.corpus))


SORTED_PY = '''
sort_values = True

def map(key, value):
    for line_no, line in enumerate(value.splitlines()):
        for w in line.split():
            yield w[:1], [w, line_no]

def reduce(key, values):
    vals = list(values)
    yield key, [len(vals), vals[0], vals[-1], sum(1 for a, b in zip(vals, vals[1:]) if a > b)]
'''


def test_sort_values_on_the_cluster_cli_and_api(fault_cluster: FaultCluster) -> None:
    import json

    from geryon.mapreduce.job import Job, load_script
    from registry.auth import load_secret
    from registry.client import RegistryClient

    c = fault_cluster
    job_dir = c.tmp / "sorted"
    job_dir.mkdir()
    (job_dir / "sorted.py").write_text(SORTED_PY)
    groups: dict[str, list] = {}
    for disk in sorted(c.corpus):
        for f in sorted(c.corpus[disk]):
            for n, line in enumerate(c.corpus[disk][f].decode().splitlines()):
                for w in line.split():
                    groups.setdefault(w[:1], []).append([w, n])
    want = {k: [len(v), min(v), max(v), 0] for k, v in groups.items()}
    cluster, local = both_modes(c, job_dir, "sorted", "-R", "3", "--format", "json", "sorted.py", "sorted.py")
    assert cluster == local
    got = {json.loads(k): json.loads(v) for part in cluster for k, v in
           (ln.split("\t") for ln in part.decode().splitlines())}
    assert got == want
    script = load_script(str(job_dir / "sorted.py"))
    job = Job(map=script.map, reduce=script.reduce, sort_values=True, partitions=2, name="api", format="json")
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        assert dict(job.run(sorted(c.corpus), registry=registry, secret=secret)) == want
