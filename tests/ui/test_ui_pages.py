"""The dashboard's pure parts: timeline rows and bars, SVG, escaping, disks and node rows."""
from __future__ import annotations

import re

from geryon.ui import jobview, pages, svg
from geryon.ui.cluster import ClusterSnapshot, NodeRow, check_text, disks_from, node_from_service, with_report
from registry.store import Service


def attempt(task: str, n: int, cpu: str, start: float, end: float | None, state: str = "done", **kw: object) -> dict:
    return {"task": task, "attempt": n, "cpu": cpu, "started": start, "ended": end,
            "seconds": None if end is None else end - start, "state": state, **kw}


RECORD = {"id": "wc-1", "name": "wc", "state": "running", "started": 100.0, "maps": 3, "partitions": 2,
          "attempts": [attempt("m0", 0, "n0", 100, 103, "failed", error="boom"), attempt("m0", 1, "n1", 103, 106),
                       attempt("m1", 0, "n0", 101, 104, bytes_in=10), attempt("m2", 0, "n0", 104, None, "running"),
                       attempt("r0", 0, "n1", 106, 107, bytes_in=500), attempt("r1", 0, "n1", 106, 108, bytes_in=100)]}


def test_a_row_per_cpu_slot_and_a_bar_per_attempt() -> None:
    tl = jobview.timeline(RECORD, now=110.0)
    assert len(tl.bars) == len(RECORD["attempts"])
    # n0 runs m0.a0 and m1.a0 at once: two slots; m2 starts after m0.a0 ended: back in slot 0
    assert tl.rows == ("n0/0", "n0/1", "n1/0", "n1/1")
    rows = {b.label: tl.rows[b.row] for b in tl.bars}
    assert rows["m0.a0"] == "n0/0" and rows["m1.a0"] == "n0/1" and rows["m2.a0"] == "n0/0"
    assert rows["r0.a0"] != rows["r1.a0"]
    running = next(b for b in tl.bars if b.state == "running")
    assert running.end == 110.0                                   # grows with `now`
    drawn = svg.timeline_svg(tl)
    assert len(re.findall(r'<rect class="bar state-', drawn)) == len(RECORD["attempts"])
    assert 'data-task="m0" data-attempt="0" data-state="failed"' in drawn


def test_progress_skew_and_failures() -> None:
    phases = jobview.progress(RECORD)
    assert phases["map"] == {"total": 3, "done": 2, "running": 1, "failed": 0}
    assert jobview.shuffled(RECORD) == [("r0", 500), ("r1", 100)]
    assert [a["attempt"] for a in jobview.failures(RECORD)] == [0]
    assert jobview.input_bytes(RECORD) == 10
    html = pages.job_page(RECORD, 110.0, {("m0", 0): "Traceback: boom"})
    assert "Traceback: boom" in html and 'href="/jobs/wc-1/logs/m0.a0"' in html
    assert '<progress max="3" value="2">' in html


def test_a_multi_step_jobs_input_skew_and_phases() -> None:
    record = {"id": "top-1", "name": "top", "state": "succeeded", "started": 100.0, "partitions": 0,
              "steps": ["map f, reduce g, R=2", "map h, reduce k, R=1"],
              "attempts": [attempt("s1.m0", 0, "n0", 100, 101, bytes_in=30), attempt("s1.m1", 0, "n1", 100, 101,
                                                                                      bytes_in=12),
                           attempt("s1.r1", 0, "n0", 101, 102, bytes_in=7), attempt("s1.r0", 0, "n1", 101, 102,
                                                                                    bytes_in=9),
                           attempt("s2.m0", 0, "n0", 102, 103, bytes_in=16),
                           attempt("s2.r0", 0, "n1", 103, 104, "failed", error="boom"),
                           attempt("s2.r0", 1, "n0", 104, 105, bytes_in=5)]}
    assert jobview.input_bytes(record) == 42             # the job's input: step 1's maps only
    assert jobview.shuffled(record) == [("s1.r0", 9), ("s1.r1", 7), ("s2.r0", 5)]
    phases = jobview.progress(record)
    assert list(phases) == ["step 1 map", "step 1 reduce", "step 2 map", "step 2 reduce"]
    assert phases["step 1 reduce"] == {"total": 2, "done": 2, "running": 0, "failed": 0}
    html = pages.job_page(record, 110.0, {("s2.r0", 0): "Traceback: boom"})
    assert 'href="/jobs/top-1/logs/s2.r0.a0"' in html and "Traceback: boom" in html


def test_what_records_and_the_registry_say_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    record = dict(RECORD, name=evil, id="x", events=[{"time": "t", "text": evil}],
                  attempts=[attempt("m0", 0, evil, 1, 2, "failed", error=evil)])
    html = pages.job_page(record, 3.0, {("m0", 0): evil})
    assert evil not in html and "&lt;script&gt;" in html
    rows = pages.jobs_part([{"id": evil, "name": evil, "state": evil, "output": evil}], 0.0)
    assert evil not in rows
    snap = ClusterSnapshot(taken=0.0, nodes=(NodeRow(name=evil, os=evil),))
    assert evil not in pages.cluster_page(snap, 0.0)


def test_disks_show_their_copy_chain_and_which_copy_is_live() -> None:
    text = ("name=d0.t kfs master=n0!in0 replica=d0.t.r format=lines\n"
            "name=d0.t.r kfs master=n1!rep0\n")
    services = [Service("tcp!h!1!rep0", (("resource", "kfs"), ("id", "rep0"), ("name", "n1"),
                                          ("capacity", "1000"), ("free", "400")))]
    (disk,) = disks_from(text, services, {("n1", "rep0"): "ok (3 verified)"})
    assert disk.name == "d0.t" and disk.format == "lines"
    assert [(c.entry, c.live) for c in disk.copies] == [("d0.t", False), ("d0.t.r", True)]
    assert disk.live_copy == "d0.t.r" and disk.copies[1].free == 400 and disk.copies[1].checksum.startswith("ok")
    assert check_text({"has_manifest": True, "damaged": ["a"], "verified": 2}) == "DAMAGED: 1 files"
    assert check_text({"has_manifest": False}) == "no manifest"


def test_a_node_row_is_the_registry_overlaid_by_the_node() -> None:
    svc = Service("tcp!h!1", (("svc", "rstyx"), ("host", "n0"), ("url", "http://h:1"), ("ncpu", "2"),
                              ("load", "0.5"), ("memfree", "100"), ("memtotal", "200")))
    node = node_from_service(svc)
    assert (node.name, node.ncpu, node.mem_free) == ("n0", 2, 100)
    fresh = with_report(node, {"load": 1.0, "virtual": 0.5, "ncpu": 4, "mem_free": 50, "mem_total": 200,
                               "running": 3, "os": "Linux"}, {"sessions": 2, "reserved": 3})
    assert (fresh.load, fresh.ncpu, fresh.running, fresh.sessions, fresh.os) == (1.5, 4, 3, 2, "Linux")
    assert with_report(node, "garbage", None) == node


def test_running_attempts_are_counted_per_node() -> None:
    assert jobview.running_on(RECORD) == {"n0": 1}
    assert jobview.running_on(dict(RECORD, state="succeeded")) == {}
    snap = ClusterSnapshot(taken=0.0, nodes=(NodeRow(name="n0"), NodeRow(name="n1")))
    html = pages.nodes_part(snap, 0.0, {"n0": 3})
    n0 = html.split('data-node="n0"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num">3</td>' in n0
