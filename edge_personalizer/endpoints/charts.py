"""Charts drawn on the server as SVG: the dashboard's pictures need no script, no font and
no request to another host, and read the same in a browser and in a saved report.

Every chart carries its numbers as text too (a <title> per mark, an aria-label for the
whole), and uses presentation attributes only (no style attribute, so a strict
Content-Security-Policy holds). Text given in is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

# Okabe-Ito: told apart by people with every common colour-vision deficiency; lines also
# differ by dash pattern, so the chart reads in greyscale too.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4")
SIGNIFICANT_UP = "#1b7a3d"
SIGNIFICANT_DOWN = "#b3261e"
NOT_SIGNIFICANT = "#8a8a8a"
AXIS = "#555555"
GRID = "#dddddd"


def percent(value: float, digits: int = 1, *, signed: bool = False) -> str:
    """0.1234 -> "12.3%" (with "+" in front of a positive value when `signed`)."""
    text = f"{value * 100:.{digits}f}%"
    return "+" + text if signed and value > 0 else text


def span(low: float | None, high: float | None, between: str = " to ") -> str:
    """An uplift's interval (+3.1% to +9.0%); "or more" where it has no upper end (the
    control's rate too near 0 to bound how many times better a variant may be); a dash
    when there is none yet."""
    if low is None:
        return "–"
    start = percent(low, signed=True)
    return f"{start} or more" if high is None else f"{start}{between}{percent(high, signed=True)}"


def uplift_bar(uplift: float | None, low: float, high: float | None, *,
               scale: tuple[float, float], label: str, width: int = 240, height: int = 30,
               judged: bool = True) -> str:
    """The uplift of one variant as a point on its 95% interval, with 0 marked. Green or red
    when the interval leaves out 0 (a significant change), grey otherwise, and grey when
    not `judged` (too few conversions for the interval to be a verdict). `scale` is the
    (smallest, largest) uplift drawn, the same for the variants of one table. A `high` of
    None (no upper end: the control's rate too near 0 to bound how many times better the
    variant may be) runs the bar off the right edge, an arrow at its end; an `uplift` of
    None (the control's rate is 0) draws no point."""
    lo, hi = _padded(scale)
    pad = 6

    def x(value: float) -> float:
        return pad + (min(max(value, lo), hi) - lo) / (hi - lo) * (width - 2 * pad)

    significant = judged and (low > 0 or high is not None and high < 0)
    colour = (SIGNIFICANT_UP if low > 0 else SIGNIFICANT_DOWN) if significant \
        else NOT_SIGNIFICANT
    described = (f"{label}: uplift "
                 + ("none (the control's is 0)" if uplift is None
                    else percent(uplift, signed=True))
                 + f", 95% interval {span(low, high)}" + (", no upper end" if high is None
                                                             else "")
                 + ", " + ("significant" if significant else "not significant" if judged
                           else "too few conversions to judge yet"))
    middle = height / 2
    faded = "" if significant else ' stroke-opacity="0.55"'
    end, arrow = (x(high), "") if high is not None else (width - pad - 6, (
        # open-ended: the bar runs on past the scale, an arrow at its end
        f'<polygon points="{width - pad - 6:.1f},{middle - 7} {width - 1:.1f},{middle} '
        f'{width - pad - 6:.1f},{middle + 7}" fill="{colour}"'
        + ("" if significant else ' fill-opacity="0.55"') + "/>"))
    point = "" if uplift is None else (
        f'<circle cx="{x(uplift):.1f}" cy="{middle}" r="5" fill="#ffffff" stroke="{colour}" '
        f'stroke-width="2.5"/>')
    return (
        f'<svg class="bar" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(described)}">'
        f"<title>{escape(described)}</title>"
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="2" y2="{height - 2}" stroke="{AXIS}" '
        f'stroke-width="1" stroke-dasharray="3 2"/>'
        f'<line x1="{x(low):.1f}" x2="{end:.1f}" y1="{middle}" y2="{middle}" '
        f'stroke="{colour}" stroke-width="8" stroke-linecap="round"{faded}/>'
        f"{arrow}{point}"
        "</svg>")


def _padded(scale: tuple[float, float]) -> tuple[float, float]:
    """The scale widened to hold 0 and a margin, never empty."""
    lo, hi = min(scale[0], 0.0), max(scale[1], 0.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    margin = (hi - lo) * 0.05
    return lo - margin, hi + margin


def line_chart(labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *,
               title: str, y_format: str = "percent", y_max: float | None = None,
               marks: Sequence[tuple[int, str]] = (), width: int = 720,
               height: int = 300) -> str:
    """Lines over `labels` (days), one per series; None leaves a gap. The y axis starts at 0
    and ends at `y_max` (default: a round number above the data), labelled as percentages
    (`y_format="percent"`) or plain numbers. `marks`: (label index, text) drawn as a
    dashed vertical line, e.g. a reweight."""
    left, right, top, bottom = 58, 16, 14, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for points in series.values() for v in points if v is not None]
    top_value = y_max if y_max is not None else _nice_ceiling(max(values) if values else 1.0)
    count = max(len(labels), 1)

    def x(i: int) -> float:
        return left + (plot_w / 2 if count == 1 else i * plot_w / (count - 1))

    def y(value: float) -> float:
        return top + plot_h - min(value, top_value) / top_value * plot_h

    def shown(value: float) -> str:
        return percent(value) if y_format == "percent" else f"{value:,.0f}"

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(5):
        value = top_value * step / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}" stroke="{GRID}" stroke-width="1"/>')
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
                     f'font-size="12" fill="{AXIS}">{escape(shown(value))}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" '
                 f'stroke="{AXIS}" stroke-width="1"/>')
    every = max(1, math.ceil(len(labels) / 6))
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 18}" text-anchor="middle" '
                         f'font-size="12" fill="{AXIS}">{escape(label[5:] or label)}</text>')
    for index, text in marks:
        parts.append(f'<line x1="{x(index):.1f}" x2="{x(index):.1f}" y1="{top}" '
                     f'y2="{top + plot_h}" stroke="{AXIS}" stroke-width="1.5" '
                     f'stroke-dasharray="5 4"><title>{escape(text)}</title></line>')
        parts.append(f'<text x="{x(index) + 4:.1f}" y="{top + 12}" font-size="12" '
                     f'fill="{AXIS}">{escape(text)}</text>')
    for n, (name, points) in enumerate(series.items()):
        colour, dash = PALETTE[n % len(PALETTE)], DASHES[n % len(DASHES)]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        for run in _runs(points):
            if len(run) > 1:
                path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                             f'stroke-width="2.5"{dashed} stroke-linejoin="round"/>')
            for i, v in run:
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" '
                             f'fill="{colour}"><title>{escape(name)}, {escape(labels[i])}: '
                             f"{escape(shown(v))}</title></circle>")
    legend_y = height - 10
    offset = left
    for n, name in enumerate(series):
        colour, dash = PALETTE[n % len(PALETTE)], DASHES[n % len(DASHES)]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="{offset}" x2="{offset + 24}" y1="{legend_y - 4}" '
                     f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="3"{dashed}/>')
        parts.append(f'<text x="{offset + 30}" y="{legend_y}" font-size="12" '
                     f'fill="#222222">{escape(name)}</text>')
        offset += 40 + 8 * min(len(name), 24)
    parts.append("</svg>")
    return "".join(parts)


def _runs(points: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of consecutive known values, with their positions."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, value in enumerate(points):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, value))
    return [run for run in runs if run]


def _nice_ceiling(value: float) -> float:
    """A round number at or above `value` for the top of an axis (1, 2, 2.5 or 5 x 10^k)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power
