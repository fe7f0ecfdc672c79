"""SVG drawn on the server: a job's task timeline and bar charts (bytes per reducer).

Every shape carries CSS classes (`bar state-done`, ...) and `data-*` attributes naming the
attempt, so the stylesheet colours them and tests count them in the DOM; a `<title>` in
each is the browser's tooltip. No inline styles (the dashboard's Content-Security-Policy
allows none).

Not here: deciding rows and bars (`geryon.ui.jobview`), the page around them.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from html import escape

from geryon.ui.jobview import Timeline

log = logging.getLogger(__name__)

DEFAULT_WIDTH = 960
"""Width of a chart, in SVG user units (it scales to the page)."""

ROW_HEIGHT = 18
LABEL_WIDTH = 110
AXIS_HEIGHT = 22


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _seconds(s: float) -> str:
    if s < 10:
        return f"{s:.1f}s"
    if s < 120:
        return f"{s:.0f}s"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def _ticks(span: float, count: int = 6) -> list[float]:
    """Round tick positions (seconds from the start) across `span`."""
    raw = span / count
    step = next((s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if s >= raw), 3600.0)
    out, t = [], 0.0
    while t <= span + 1e-9:
        out.append(t)
        t += step
    return out


def timeline_svg(tl: Timeline, width: int = DEFAULT_WIDTH) -> str:
    """The timeline: one row per cpu slot, one `<rect class="bar state-S">` per attempt."""
    plot = width - LABEL_WIDTH - 10
    height = AXIS_HEIGHT + ROW_HEIGHT * max(1, len(tl.rows)) + 4
    span = tl.t1 - tl.t0

    def x(t: float) -> float:
        return LABEL_WIDTH + (t - tl.t0) / span * plot

    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="task timeline">']
    for t in _ticks(span):
        px = _f(x(tl.t0 + t))
        parts.append(f'<line class="tick" x1="{px}" y1="{AXIS_HEIGHT - 4}" x2="{px}" y2="{height}"/>'
                     f'<text class="axis" x="{px}" y="{AXIS_HEIGHT - 8}">{_seconds(t)}</text>')
    for i, row in enumerate(tl.rows):
        y = AXIS_HEIGHT + i * ROW_HEIGHT
        parts.append(f'<text class="rowlabel" x="{LABEL_WIDTH - 6}" y="{y + ROW_HEIGHT - 5}">{escape(row)}</text>')
        if i % 2:
            parts.append(f'<rect class="stripe" x="{LABEL_WIDTH}" y="{y}" width="{plot}" height="{ROW_HEIGHT}"/>')
    for b in tl.bars:
        y = AXIS_HEIGHT + b.row * ROW_HEIGHT + 2
        x0 = x(b.start)
        w = max(x(b.end) - x0, 2.0)
        tip = f"{b.label} on {b.cpu}: {b.state}, {_seconds(b.end - b.start)}"
        if b.error:
            tip += f"\n{b.error[:300]}"
        parts.append(f'<rect class="bar state-{escape(b.state)}" data-task="{escape(b.task)}" '
                     f'data-attempt="{b.attempt}" data-state="{escape(b.state)}" x="{_f(x0)}" y="{y}" '
                     f'width="{_f(w)}" height="{ROW_HEIGHT - 4}" rx="2"><title>{escape(tip)}</title></rect>')
        if w > 8 * len(b.label):
            parts.append(f'<text class="barlabel" x="{_f(x0 + 3)}" y="{y + ROW_HEIGHT - 8}">{escape(b.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(items: Sequence[tuple[str, float]], unit: str = "bytes", width: int = DEFAULT_WIDTH,
             css: str = "skew") -> str:
    """A horizontal bar per (label, value), scaled to the largest; the value is printed beside it."""
    if not items:
        return ""
    plot = width - LABEL_WIDTH - 120
    top = max(v for _, v in items) or 1.0
    mean = sum(v for _, v in items) / len(items)
    height = ROW_HEIGHT * len(items) + 4
    parts = [f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(css)}">']
    for i, (label, value) in enumerate(items):
        y = i * ROW_HEIGHT + 2
        w = max(value / top * plot, 1.0)
        hot = " hot" if len(items) > 1 and value > 1.5 * mean else ""
        parts.append(f'<text class="rowlabel" x="{LABEL_WIDTH - 6}" y="{y + ROW_HEIGHT - 7}">{escape(label)}</text>'
                     f'<rect class="sbar{hot}" data-label="{escape(label)}" x="{LABEL_WIDTH}" y="{y}" '
                     f'width="{_f(w)}" height="{ROW_HEIGHT - 4}" rx="2"><title>{escape(label)}: '
                     f'{escape(human(value, unit))}</title></rect>'
                     f'<text class="value" x="{_f(LABEL_WIDTH + w + 6)}" y="{y + ROW_HEIGHT - 7}">'
                     f'{escape(human(value, unit))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def human(value: float, unit: str = "bytes") -> str:
    """1536 -> '1.5 KiB' (bytes), else the number with the unit."""
    if unit != "bytes":
        return f"{value:g} {unit}".strip()
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or suffix == "TiB":
            return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    return f"{value:.1f} TiB"
