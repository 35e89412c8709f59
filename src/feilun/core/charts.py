"""Inline SVG charts for reports: values with intervals, bars with interval whiskers, plain bars.

Plain string building, no scripts or external files, every label escaped: a page that embeds
them stays self-contained and safe to open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT, PAD = 520, 220, 40
COLOURS = ("#8a8f98", "#1f77b4", "#2ca02c", "#d62728")

# (value, low, high); None where a label has no figure
Point = tuple[float, float, float] | None


def _frame(title: str, body: str, legend: Sequence[str] = ()) -> str:
    keys = "".join(
        f'<rect x="{PAD + i * 110}" y="8" width="10" height="10" fill="{COLOURS[i % 4]}"/>'
        f'<text x="{PAD + 14 + i * 110}" y="17" font-size="11">{escape(name)}</text>'
        for i, name in enumerate(legend)
    )
    return (
        f"<figure><figcaption>{escape(title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"{keys}{body}</svg></figure>"
    )


def _axes(labels: Sequence[str], top: float) -> tuple[str, float, float]:
    """The axes and x labels; the x step and the y scale (pixels per unit)."""
    plot_h = HEIGHT - 2 * PAD
    step = (WIDTH - 2 * PAD) / max(len(labels), 1)
    parts = [
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" font-size="10" text-anchor="end">{top:.3g}</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" font-size="10" text-anchor="end">0</text>',
    ]
    parts += [
        f'<text x="{PAD + step * (i + 0.5):.1f}" y="{HEIGHT - PAD + 14}" font-size="10" '
        f'text-anchor="middle">{escape(label)}</text>'
        for i, label in enumerate(labels)
    ]
    return "".join(parts), step, plot_h / top if top > 0 else 0.0


def _top(series: Mapping[str, Sequence[Point]]) -> float:
    """The y axis' top: 1 for scores in [0, 1], else the highest interval end."""
    return max([p[2] for points in series.values() for p in points if p] + [1.0])


def interval_chart(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[Point]], top: float = 1.0
) -> str:
    """Per label, each series' value as a dot with its interval as a bar."""
    axes, step, scale = _axes(labels, top)
    marks = []
    for k, points in enumerate(series.values()):
        colour = COLOURS[k % 4]
        for i, point in enumerate(points):
            if point is None:
                continue
            value, low, high = point
            x = PAD + step * (i + 0.5) + (k - (len(series) - 1) / 2) * 12
            y, y_low, y_high = (HEIGHT - PAD - v * scale for v in (value, low, high))
            marks.append(
                f'<line x1="{x:.1f}" y1="{y_low:.1f}" x2="{x:.1f}" y2="{y_high:.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                f"<title>{value:.4f} [{low:.4f}, {high:.4f}]</title></circle>"
            )
    return _frame(title, axes + "".join(marks), list(series))


def interval_bars(title: str, labels: Sequence[str], series: Mapping[str, Sequence[Point]]) -> str:
    """Per label, one bar per series (`class="bar"`) with its interval as a whisker."""
    axes, step, scale = _axes(labels, _top(series))
    width = step * 0.7 / max(len(series), 1)
    marks = []
    for k, points in enumerate(series.values()):
        colour = COLOURS[(k + 1) % 4] if len(series) == 1 else COLOURS[k % 4]
        for i, point in enumerate(points):
            if point is None:
                continue
            value, low, high = point
            x = PAD + step * (i + 0.15) + k * width
            mid = x + width / 2
            y, y_low, y_high = (HEIGHT - PAD - max(v, 0.0) * scale for v in (value, low, high))
            marks.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{HEIGHT - PAD - y:.1f}" fill="{colour}">'
                f"<title>{value:.4f} [{low:.4f}, {high:.4f}]</title></rect>"
                f'<path class="whisker" d="M{mid:.1f} {y_low:.1f}V{y_high:.1f}'
                f'M{mid - 4:.1f} {y_low:.1f}h8M{mid - 4:.1f} {y_high:.1f}h8" '
                'stroke="#333" fill="none"/>'
            )
    return _frame(title, axes + "".join(marks), list(series) if len(series) > 1 else ())


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], unit: str = "") -> str:
    """One bar per label."""
    top = max([*values, 0.0]) or 1.0
    axes, step, scale = _axes(labels, top)
    bars = []
    for i, value in enumerate(values):
        h = value * scale
        x = PAD + step * i + step * 0.2
        bars.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{step * 0.6:.1f}" '
            f'height="{h:.1f}" fill="{COLOURS[1]}"><title>{value:g} {escape(unit)}</title></rect>'
            f'<text x="{x + step * 0.3:.1f}" y="{HEIGHT - PAD - h - 3:.1f}" font-size="10" '
            f'text-anchor="middle">{value:g}</text>'
        )
    return _frame(f"{title} ({unit})" if unit else title, axes + "".join(bars))
