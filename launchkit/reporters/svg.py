"""Small charts as inline SVG, drawn from the data: axes, ticks, labels, no script.

Readable without colour (values are written on or beside the marks), titled for screen
readers (``role="img"`` with ``<title>`` and ``<desc>``), and scaled with ``viewBox`` so a
phone shows the whole chart.
"""

from __future__ import annotations

import math
from typing import Sequence

from markupsafe import escape

INK = "#1f2937"
GRID = "#e5e7eb"
BLUE = "#1d4ed8"  # 8.6:1 on white
AMBER = "#b45309"  # 5.0:1 on white


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``top``; whole numbers, since charts count people and sales."""
    if top <= 0:
        return [0, 1]
    raw = max(top / count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(int(math.ceil(top / step)) + 1)]


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def _y_axis(parts: list[str], values: Sequence[float], *, left: int, right: int, top: int, height: int) -> float:
    """Grid lines and tick labels for ``values``; returns the axis' top value."""
    ticks = nice_ticks(max(values, default=0))
    for tick in ticks:
        y = top + height - height * tick / ticks[-1]
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{INK}">{_number(tick)}</text>')
    return ticks[-1]


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, description: str, unit: str = "",
              color: str = BLUE, width: int = 640, height: int = 260) -> str:
    """Vertical bars, one per label, with a y axis and each bar's value written above it."""
    left, right, top, bottom = 48, 12, 28, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [_open(width, height, title, description)]
    ceiling = _y_axis(parts, values, left=left, right=width - right, top=top, height=plot_h)
    slot = plot_w / max(len(values), 1)
    bar_w = max(2.0, slot * 0.7)
    every = max(1, math.ceil(len(labels) / 12))  # at most a dozen labels under the axis
    for i, (label, value) in enumerate(zip(labels, values)):
        h = plot_h * value / ceiling
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}"><title>{escape(label)}: {_number(value)}{escape(unit)}</title></rect>')
        if value and len(values) <= 31:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="11" fill="{INK}">{_number(value)}</text>')
        if i % every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" fill="{INK}">{escape(label)}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="{INK}"/>')
    parts.append(f'<text x="{left}" y="{height - 8}" font-size="11" fill="{INK}">{escape(unit.strip())}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(labels: Sequence[str], values: Sequence[float], *, title: str, description: str,
               color: str = AMBER, width: int = 640, height: int = 240) -> str:
    """A running total as a line over a filled area, with its last value written at the end."""
    left, right, top, bottom = 56, 56, 24, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [_open(width, height, title, description)]
    ceiling = _y_axis(parts, values, left=left, right=width - right, top=top, height=plot_h)
    step = plot_w / max(len(values) - 1, 1)
    points = [(left + i * step, top + plot_h - plot_h * v / ceiling) for i, v in enumerate(values)]
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        area = f"{left},{top + plot_h} {path} {points[-1][0]:.1f},{top + plot_h}"
        parts.append(f'<polygon points="{area}" fill="{color}" fill-opacity="0.15"/>')
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        x, y = points[-1]
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 4:.1f}" font-size="12" font-weight="bold" fill="{INK}">{_number(values[-1])}</text>')
    every = max(1, math.ceil(len(labels) / 8))
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            parts.append(f'<text x="{left + i * step:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" fill="{INK}">{escape(label)}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="{INK}"/>')
    parts.append("</svg>")
    return "".join(parts)


def band_gauge(value: float | None, low: float, high: float, *, title: str, width: int = 640, height: int = 70) -> str:
    """The conversion rate against its benchmark band, on a 0 to max(2×high, value) scale."""
    left, right = 12, 12
    span = max(high * 2, (value or 0) * 1.15, 0.01)
    scale = (width - left - right) / span
    y = 26
    parts = [_open(width, height, title, f"conversion {_pct(value)} against a benchmark band of {_pct(low)} to {_pct(high)}")]
    parts.append(f'<rect x="{left}" y="{y}" width="{width - left - right}" height="14" fill="{GRID}" rx="3"/>')
    parts.append(f'<rect x="{left + low * scale:.1f}" y="{y}" width="{(high - low) * scale:.1f}" height="14" fill="#86efac"/>')
    parts.append(f'<text x="{left + low * scale:.1f}" y="{y + 30}" font-size="11" text-anchor="middle" fill="{INK}">{_pct(low)}</text>')
    parts.append(f'<text x="{left + high * scale:.1f}" y="{y + 30}" font-size="11" text-anchor="middle" fill="{INK}">{_pct(high)}</text>')
    if value is not None:
        x = left + min(value, span) * scale
        parts.append(f'<line x1="{x:.1f}" y1="{y - 8}" x2="{x:.1f}" y2="{y + 20}" stroke="{BLUE}" stroke-width="3"/>')
        parts.append(f'<text x="{x:.1f}" y="{y - 12}" font-size="12" font-weight="bold" text-anchor="middle" fill="{BLUE}">{_pct(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _open(width: int, height: int, title: str, description: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif"><title>{escape(title)}</title>'
            f'<desc>{escape(description)}</desc>')
