"""The dashboard's HTML: the cluster page, the jobs list, one job's page; pure functions to str.

Every page is whole HTML rendered here; the parts that change (`PART_*` ids) are also
rendered alone, so live updates (server-sent events, `static/ui.js`) replace exactly
those elements. Everything taken from a record or the registry is escaped. No inline
scripts or styles: the Content-Security-Policy forbids them.

Not here: reading records or the cluster, HTTP.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from geryon.mapreduce.attempt import AttemptId, AttemptState
from geryon.mapreduce.jobhistory import JobState
from geryon.ui import jobview, svg
from geryon.ui.cluster import ClusterSnapshot, NodeRow, NodeState

log = logging.getLogger(__name__)

STDERR_TAIL = 2000
"""Bytes of a failed attempt's stderr shown on the job page."""

STATE_CLASSES = tuple(dict.fromkeys([*(s.value for s in JobState), *(s.value for s in AttemptState),
                                     *(s.value for s in NodeState)]))
"""The states that have a CSS class of their own (jobs, attempts, nodes); any other shows as "other"."""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def clock_text(t: float | None, now: float | None = None) -> str:
    """A wall-clock time as people read it: `17:52:01` today, else `2026-12-01 17:52`."""
    if not isinstance(t, (int, float)):
        return ""
    now = time.time() if now is None else now
    lt, ln = time.localtime(t), time.localtime(now)
    return time.strftime("%H:%M:%S" if lt[:3] == ln[:3] else "%Y-%m-%d %H:%M", lt)


def seconds_text(s: float | None) -> str:
    if not isinstance(s, (int, float)):
        return ""
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def _state(state: str, extra: str = "") -> str:
    cls = state if state in STATE_CLASSES else "other"
    return f'<span class="state state-{cls}" data-state="{_e(state)}">{_e(state)}{_e(extra)}</span>'


def page(title: str, current: str, body: str, live: str = "", updated: float | None = None,
         assets: bool = True) -> str:
    """A whole page: header with navigation, `body`, and where its live updates come from.

    `assets=False` leaves out the stylesheet and script: for a refusal to a browser without
    the login, which would be refused them too (the guard covers /static/).
    """
    here = ' class="current"'
    nav = "".join(f'<a href="{href}"{here if name == current else ""}>{name}</a>'
                  for name, href in (("Cluster", "/cluster"), ("Jobs", "/jobs")))
    live_attr = f' data-live="{_e(live)}"' if live else ""
    links = '<link rel="stylesheet" href="/static/ui.css"><script src="/static/ui.js" defer></script>'
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)} · Geryon</title>{links if assets else ""}</head><body{live_attr}>'
            f'<header><span class="brand">Geryon</span><nav>{nav}</nav>'
            f'<span id="updated" class="updated">{_e(_updated(updated))}</span></header>'
            f'<main><h1>{_e(title)}</h1>{body}</main></body></html>')


def _updated(t: float | None) -> str:
    return f"as of {clock_text(t)}" if t is not None else ""


def section(part: str, heading: str, content: str) -> str:
    return f'<section><h2>{_e(heading)}</h2><div id="{part}" class="part">{content}</div></section>'


def table(head: Sequence[str], rows: Sequence[str], css: str = "") -> str:
    if not rows:
        return '<p class="empty">none</p>'
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f'<table class="{css}"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


# -- the cluster ---------------------------------------------------------------------------------
PART_NODES, PART_DISKS, PART_SERVICES, PART_REGISTRY = "nodes", "disks", "services", "registry"


def _node_row(n: NodeRow, now: float, tasks: int) -> str:
    if n.state == NodeState.LIVE:
        state = _state(NodeState.LIVE)
    else:
        ago = f" since {clock_text(n.since, now)} ({seconds_text(now - n.since)} ago)" if n.since else ""
        state = _state(n.state, ago)
    used = max(n.mem_total - n.mem_free, 0)
    mem = (f'<meter min="0" max="{n.mem_total}" value="{used}"></meter> {svg.human(n.mem_free)} free'
           f' of {svg.human(n.mem_total)}') if n.mem_total else ""
    per_cpu = n.load / n.ncpu if n.ncpu else 0.0
    load = (f'<meter min="0" max="1" high="0.8" value="{min(per_cpu, 1.0):.2f}"></meter> {n.load:.2f}'
            + (f' <span class="dim">({n.virtual:.2f} virtual)</span>' if n.virtual else ""))
    return (f'<tr class="node" data-node="{_e(n.name)}" data-state="{_e(n.state)}"><td>{_e(n.name)}</td>'
            f'<td>{state}</td><td>{_e(n.os)}/{_e(n.arch)}</td><td class="num">{n.ncpu}</td><td>{load}</td>'
            f'<td>{mem}</td><td class="num">{tasks}</td><td class="num">{n.running}</td><td class="num">{n.sessions}'
            f'{f" ({n.reserved} slots)" if n.reserved else ""}</td><td>{_e(" ".join(n.chunks))}</td></tr>')


def nodes_part(snap: ClusterSnapshot, now: float, tasks: Mapping[str, int] | None = None) -> str:
    """The nodes table; `tasks`: job attempts running per node (from this machine's job records)."""
    rows = [_node_row(n, now, (tasks or {}).get(n.name, 0)) for n in snap.nodes]
    return table(("node", "state", "os/arch", "cpus", "load", "memory", "tasks", "commands", "sessions", "chunks"),
                 rows, "nodes")


def disks_part(snap: ClusterSnapshot) -> str:
    rows = []
    for d in snap.disks:
        copies = []
        for i, c in enumerate(d.copies):
            role = "master" if i == 0 else "replica"
            live = "live" if c.live else "down"
            room = (f"{svg.human(c.free)} free of {svg.human(c.capacity)}"
                    if c.capacity is not None and c.capacity >= 0 and c.free is not None and c.free >= 0 else "")
            cls = "copy reading" if c.entry == d.live_copy else "copy"
            copies.append(f'<li class="{cls}" data-live="{str(c.live).lower()}">{role} <b>{_e(c.host)}!{_e(c.chunk)}</b>'
                          f' ({_e(c.entry)}) {_state(live)} {_e(room)} <span class="sums">{_e(c.checksum)}</span></li>')
        reading = _e(d.live_copy) if d.live_copy else '<span class="state state-dead">no live copy</span>'
        rows.append(f'<tr data-disk="{_e(d.name)}"><td>{_e(d.name)}</td><td>{_e(d.format)}</td>'
                    f'<td>{reading}</td><td><ul class="copies">{"".join(copies)}</ul></td></tr>')
    return table(("disk", "format", "reads from", "copies"), rows, "disks")


def services_part(snap: ClusterSnapshot, now: float) -> str:
    rows = [f'<tr><td>{_e(s.name)}</td><td class="num">{seconds_text(now - s.first_seen)}</td>'
            f'<td class="line">{_e(s.line)}</td></tr>' for s in snap.services]
    return table(("service", "seen for", "entry"), rows, "services")


def registry_part(snap: ClusterSnapshot) -> str:
    where = f"registry {_e(snap.registry)}" if snap.registry else "registry"
    if snap.error:
        return f'<p class="error">{where}: {_e(snap.error)}</p>'
    live = sum(1 for n in snap.nodes if n.state == NodeState.LIVE)
    return f'<p>{where}: {live} of {len(snap.nodes)} nodes live, {len(snap.disks)} disks, {len(snap.services)} services</p>'


def cluster_parts(snap: ClusterSnapshot, now: float, tasks: Mapping[str, int] | None = None) -> dict[str, str]:
    return {PART_REGISTRY: registry_part(snap), PART_NODES: nodes_part(snap, now, tasks), PART_DISKS: disks_part(snap),
            PART_SERVICES: services_part(snap, now)}


def cluster_page(snap: ClusterSnapshot, now: float, tasks: Mapping[str, int] | None = None) -> str:
    parts = cluster_parts(snap, now, tasks)
    body = (f'<div id="{PART_REGISTRY}" class="part">{parts[PART_REGISTRY]}</div>'
            + section(PART_NODES, "Nodes (tasks: job attempts running; commands: rcpu and dsh)", parts[PART_NODES]) + section(PART_DISKS, "Disks", parts[PART_DISKS])
            + section(PART_SERVICES, "Registry services", parts[PART_SERVICES]))
    return page("Cluster", "Cluster", body, live="/events/cluster", updated=snap.taken)


# -- the jobs ------------------------------------------------------------------------------------
PART_JOBS = "jobs"


def progress_html(phases: Mapping[str, Mapping[str, int]]) -> str:
    """One `<progress>` per phase with `done/total` (and running, failed) beside it."""
    out = []
    for phase in ("map", "reduce", *sorted(p for p in phases if p not in ("map", "reduce"))):
        c = phases.get(phase)
        if not c:
            continue
        extra = "".join(f", {c[k]} {k}" for k in ("running", "failed") if c.get(k))
        out.append(f'<div class="phase" data-phase="{_e(phase)}"><span class="pname">{_e(phase)}</span>'
                   f'<progress max="{max(c["total"], 1)}" value="{c["done"]}"></progress>'
                   f'<span class="pcount" data-done="{c["done"]}" data-total="{c["total"]}">'
                   f'{c["done"]}/{c["total"]}{_e(extra)}</span></div>')
    return "".join(out)


def jobs_part(rows: Sequence[Mapping[str, Any]], now: float) -> str:
    out = []
    for r in rows:
        href = "/jobs/" + quote(str(r["id"]), safe="")
        out.append(f'<tr class="job" data-job="{_e(r["id"])}" data-state="{_e(r.get("state", ""))}">'
                   f'<td><a href="{href}">{_e(r["id"])}</a></td><td>{_e(r.get("name", ""))}</td>'
                   f'<td>{_e(r.get("mode", ""))}</td><td>{_state(str(r.get("state", "")))}</td>'
                   f'<td>{_e(clock_text(r.get("started"), now))}</td><td class="num">{_e(seconds_text(r.get("duration")))}</td>'
                   f'<td class="progress">{progress_html(r.get("phases") or {})}</td>'
                   f'<td class="num">{_e(svg.human(r.get("input_bytes") or 0))}</td>'
                   f'<td class="line">{_e(r.get("output", ""))}</td></tr>')
    return table(("job", "name", "mode", "state", "started", "duration", "progress", "input", "output"), out, "jobs")


def jobs_page(rows: Sequence[Mapping[str, Any]], now: float, root: str) -> str:
    body = (f'<p class="dim">job records in {_e(root)}</p>' + section(PART_JOBS, "Jobs", jobs_part(rows, now)))
    return page("Jobs", "Jobs", body, live="/events/jobs", updated=now)


# -- one job -------------------------------------------------------------------------------------
PART_SUMMARY, PART_PROGRESS, PART_TIMELINE, PART_SLOWEST = "summary", "progress", "timeline", "slowest"
PART_COUNTERS, PART_SKEW, PART_FAILURES, PART_EVENTS = "counters", "skew", "failures", "events"


def _log_href(job_id: str, task: str, attempt: Any) -> str:
    return f"/jobs/{quote(job_id, safe='')}/logs/{quote(str(AttemptId(str(task), int(attempt or 0))), safe='')}"


def _summary(record: Mapping[str, Any], now: float) -> str:
    rec = dict(record)
    fields = [("state", _state(str(rec.get("state", "")))), ("name", _e(rec.get("name", ""))),
              ("mode", _e(rec.get("mode", ""))), ("started", _e(clock_text(rec.get("started"), now))),
              ("duration", _e(seconds_text(jobview.duration(rec, now)))),
              ("input", _e(f'{svg.human(jobview.input_bytes(rec))} from {" ".join(map(str, rec.get("disks") or []))}')),
              ("output", _e(jobview.output_of(rec))), ("partitions", _e(rec.get("partitions", ""))),
              ("cpus", _e(" ".join(map(str, rec.get("cpus") or [])))),
              ("attempts", str(len(rec.get("attempts") or [])))]
    error = (rec.get("summary") or {}).get("error") if isinstance(rec.get("summary"), dict) else None
    if error:
        fields.append(("error", f'<pre class="error">{_e(error)}</pre>'))
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in fields) + "</dl>"


LEGEND = "".join(f'<span class="key"><svg width="12" height="12"><rect class="bar state-{s}" width="12" height="12"/>'
                 f'</svg> {s}</span>' for s in jobview.ATTEMPT_STATES)


def _timeline(record: Mapping[str, Any], now: float) -> str:
    tl = jobview.timeline(dict(record), now)
    if not tl.bars:
        return '<p class="empty">no attempts yet</p>'
    return f'<div class="legend">{LEGEND}</div><div class="chart">{svg.timeline_svg(tl)}</div>'


def _slowest(record: Mapping[str, Any], job_id: str) -> str:
    rows = [f'<tr><td>{_e(AttemptId(str(a["task"]), int(a.get("attempt") or 0)))}</td><td>{_e(a.get("cpu", ""))}</td>'
            f'<td class="num">{seconds_text(a.get("seconds"))}</td><td class="num">{a.get("records_in", 0)}</td>'
            f'<td class="num">{svg.human(a.get("bytes_in") or 0)}</td><td class="line">{_e(a.get("input", ""))}</td></tr>'
            for a in jobview.slowest(dict(record))]
    return table(("attempt", "cpu", "took", "records in", "bytes in", "input"), rows)


def _counters(record: Mapping[str, Any]) -> str:
    rows = [f"<tr><td>{_e(g)}</td><td>{_e(n)}</td><td class=\"num\">{_e(v)}</td></tr>"
            for g, n, v in jobview.counters(dict(record))]
    return table(("group", "counter", "value"), rows)


def _skew(record: Mapping[str, Any]) -> str:
    items = [(t, float(b)) for t, b in jobview.shuffled(dict(record))]
    return f'<div class="chart">{svg.bars_svg(items)}</div>' if items else '<p class="empty">no reducer done yet</p>'


def _failures(record: Mapping[str, Any], job_id: str, tails: Mapping[tuple[str, int], str]) -> str:
    out = []
    for a in jobview.failures(dict(record)):
        key = (str(a["task"]), int(a.get("attempt") or 0))
        tail = tails.get(key, "")
        log_link = (f' <a href="{_log_href(job_id, key[0], key[1])}">whole stderr</a>' if key in tails else "")
        out.append(f'<div class="failure" data-task="{_e(key[0])}" data-attempt="{key[1]}">'
                   f'<h3>{_e(AttemptId(*key))} on {_e(a.get("cpu", ""))}: {_state(str(a.get("state")))}{log_link}</h3>'
                   f'<pre class="error">{_e(a.get("error", ""))}</pre>'
                   + (f'<pre class="stderr">{_e(tail)}</pre>' if tail else "") + "</div>")
    return "".join(out) or '<p class="empty">none</p>'


def _events(record: Mapping[str, Any]) -> str:
    rows = [f'<tr><td class="when">{_e(e.get("time", ""))}</td><td class="line">{_e(e.get("text", ""))}</td></tr>'
            for e in record.get("events") or [] if isinstance(e, dict)]
    return table(("when", "event"), rows, "events")


def job_parts(record: Mapping[str, Any], now: float, tails: Mapping[tuple[str, int], str]) -> dict[str, str]:
    job_id = str(record.get("id", ""))
    return {PART_SUMMARY: _summary(record, now), PART_PROGRESS: progress_html(jobview.progress(dict(record))),
            PART_TIMELINE: _timeline(record, now), PART_SLOWEST: _slowest(record, job_id),
            PART_COUNTERS: _counters(record), PART_SKEW: _skew(record),
            PART_FAILURES: _failures(record, job_id, tails), PART_EVENTS: _events(record)}


def job_page(record: Mapping[str, Any], now: float, tails: Mapping[tuple[str, int], str]) -> str:
    parts = job_parts(record, now, tails)
    job_id = str(record.get("id", ""))
    body = (section(PART_SUMMARY, "Summary", parts[PART_SUMMARY]) + section(PART_PROGRESS, "Progress", parts[PART_PROGRESS])
            + section(PART_TIMELINE, "Task timeline (a row per cpu slot, a bar per attempt)", parts[PART_TIMELINE])
            + section(PART_SLOWEST, "Slowest tasks", parts[PART_SLOWEST])
            + section(PART_SKEW, "Bytes shuffled per reducer", parts[PART_SKEW])
            + section(PART_COUNTERS, "Counters", parts[PART_COUNTERS])
            + section(PART_FAILURES, "Failures", parts[PART_FAILURES])
            + section(PART_EVENTS, "Events", parts[PART_EVENTS]))
    return page(f"Job {job_id}", "Jobs", body, live=f"/events/job/{quote(job_id, safe='')}", updated=now)


def message_page(title: str, text: str, assets: bool = True) -> str:
    """A refusal or a not-found, as a page (`assets`: as for `page`)."""
    return page(title, "", f'<p class="error">{_e(text)}</p>', assets=assets)
