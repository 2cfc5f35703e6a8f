"""Pictures for the Prefect artifacts, drawn as plain SVG (no plotting library, nothing fetched).

:func:`psi_chart_svg` draws the weekly retrain's drift table as horizontal
bars with the PSI thresholds of :mod:`payer_scoring.drift` (0.10 moderate,
0.25 major); :func:`calibration_chart_svg` the risk score's calibration
curve on a matured scoring run (published score vs realized outcome rate);
:func:`category_shares_svg` the category shares of the last weeks' runs as
stacked bars; :func:`markdown_image` embeds an SVG in a markdown artifact as a
``data:`` URI, which the Prefect UI renders as an image.
"""

from __future__ import annotations

import base64
from html import escape

from payer_scoring.drift import PSI_MAJOR, PSI_MODERATE
from payer_scoring.rules import CATEGORIES, CATEGORY_LABELS

ROW_HEIGHT = 22
LABEL_WIDTH = 190
BAR_WIDTH = 420
COLOURS = {"drifted": "#c0392b", "noise": "#e6a23c", "stable": "#6b8e9f"}
CATEGORY_COLOURS = {"new": "#9aa5b1", "good": "#2e8b57", "doubtful": "#e6a23c", "forgetful": "#5b8def", "bad": "#c0392b"}
PLOT = 360  # side of the calibration plot's square, px


def psi_chart_svg(rows: list[dict], title: str) -> str:
    """SVG of one bar per feature: its PSI (x axis 0 to max(0.3, largest PSI)), threshold lines at 0.10 and 0.25.

    ``rows``: the drift-table rows ({feature, psi (None = not computable),
    drifted (bool)}), drawn in the given order.  Red: drifted (PSI >= 0.10 and
    KS significant); amber: PSI >= 0.10 but KS not significant (noise); grey:
    stable.  Returns the SVG document as text.
    """
    psis = [r["psi"] for r in rows if r.get("psi") is not None]
    top = max([0.3, *psis])
    height = 50 + ROW_HEIGHT * len(rows) + 30
    width = LABEL_WIDTH + BAR_WIDTH + 70

    def x(psi: float) -> float:
        return LABEL_WIDTH + BAR_WIDTH * min(psi, top) / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, r in enumerate(rows):
        y = 40 + i * ROW_HEIGHT
        psi = r.get("psi")
        colour = COLOURS["drifted"] if r.get("drifted") else COLOURS["noise"] if (psi or 0) >= PSI_MODERATE else COLOURS["stable"]
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">{escape(str(r["feature"]))}</text>')
        if psi is None:
            parts.append(f'<text x="{LABEL_WIDTH + 4}" y="{y + 15}" fill="#888">n/a</text>')
            continue
        parts.append(f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{x(psi) - LABEL_WIDTH:.1f}" height="{ROW_HEIGHT - 6}" fill="{colour}"/>')
        parts.append(f'<text x="{x(psi) + 4:.1f}" y="{y + 15}">{psi:.3f}</text>')
    bottom = 40 + ROW_HEIGHT * len(rows)
    for value, label in ((PSI_MODERATE, "0.10 moderate"), (PSI_MAJOR, "0.25 major")):
        parts.append(f'<line x1="{x(value):.1f}" y1="34" x2="{x(value):.1f}" y2="{bottom}" stroke="#333" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{x(value):.1f}" y="{bottom + 16}" text-anchor="middle" fill="#333">{label}</text>')
    parts.append(f'<line x1="{LABEL_WIDTH}" y1="34" x2="{LABEL_WIDTH}" y2="{bottom}" stroke="#333"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def markdown_image(svg: str, alt: str) -> str:
    """Markdown ``![alt](data:image/svg+xml;base64,...)`` of ``svg``."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode('utf-8')).decode('ascii')})"


def _svg_open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]


def calibration_chart_svg(bins: list[dict], title: str) -> str:
    """SVG of the risk score's calibration curve: x = mean published score, y = realized outcome rate, both 0-1.

    ``bins``: :func:`models.risk_backtest.reliability` rows ({n,
    mean_score, outcome_rate}, shares 0-1).  One dot per bin (radius grows
    with the square root of its customers, labelled with n), joined by a
    line; the dashed diagonal is perfect calibration (a dot above it: more
    customers went bad than the score said).  Returns the SVG document.
    """
    left, top = 60, 40
    width, height = left + PLOT + 40, top + PLOT + 50
    biggest = max([b["n"] for b in bins] or [1])

    def xy(score: float, rate: float) -> tuple[float, float]:
        return left + PLOT * score, top + PLOT * (1 - rate)

    parts = _svg_open(width, height, title)
    parts.append(f'<rect x="{left}" y="{top}" width="{PLOT}" height="{PLOT}" fill="none" stroke="#333"/>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, y = xy(tick, tick)
        parts.append(f'<text x="{x:.1f}" y="{top + PLOT + 16}" text-anchor="middle">{tick:.2f}</text>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    parts.append(f'<line x1="{left}" y1="{top + PLOT}" x2="{left + PLOT}" y2="{top}" stroke="#888" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{left + PLOT / 2}" y="{top + PLOT + 36}" text-anchor="middle">mean risk score published (share 0-1)</text>')
    parts.append(f'<text x="14" y="{top + PLOT / 2}" text-anchor="middle" transform="rotate(-90 14 {top + PLOT / 2})">'
                 'realized outcome rate (share 0-1)</text>')
    points = [xy(b["mean_score"], b["outcome_rate"]) for b in bins]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#c0392b" stroke-width="1.5"/>')
    for b, (x, y) in zip(bins, points):
        radius = 3 + 7 * (b["n"] / biggest) ** 0.5
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="#c0392b" fill-opacity="0.7"/>')
        parts.append(f'<text x="{x + radius + 3:.1f}" y="{y + 4:.1f}" fill="#555" font-size="10">{b["n"]}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def category_shares_svg(weeks: list[dict], title: str) -> str:
    """SVG of one 100 % stacked horizontal bar per scoring date: the share of customers in each category.

    ``weeks``: [{as_of (date or str), counts: {category: customers}}], drawn
    top to bottom in the given order (oldest first), labelled with the date
    and (in brackets) the run's customers; segments in the fixed category
    order of :data:`payer_scoring.rules.CATEGORIES`, their share printed on
    those of 4 % or more (the caller gives the exact shares as a table), and a
    two-row legend.
    Returns the SVG document.
    """
    width = LABEL_WIDTH + BAR_WIDTH + 70
    height = 50 + ROW_HEIGHT * len(weeks) + 58
    parts = _svg_open(width, height, title)
    for i, week in enumerate(weeks):
        y = 40 + i * ROW_HEIGHT
        total = sum(week["counts"].values()) or 1
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">{escape(str(week["as_of"]))} ({total})</text>')
        x = float(LABEL_WIDTH)
        for code in CATEGORIES:
            share = week["counts"].get(code, 0) / total
            if share <= 0:
                continue
            parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{BAR_WIDTH * share:.1f}" height="{ROW_HEIGHT - 6}" '
                         f'fill="{CATEGORY_COLOURS[code]}"><title>{code}: {share:.1%}</title></rect>')
            if share >= 0.04:
                parts.append(f'<text x="{x + BAR_WIDTH * share / 2:.1f}" y="{y + 15}" text-anchor="middle" fill="white" '
                             f'font-size="10">{share:.0%}</text>')
            x += BAR_WIDTH * share
    legend_y = 50 + ROW_HEIGHT * len(weeks) + 10
    for k, code in enumerate(CATEGORIES):  # two rows: five pt-BR labels (up to ~150 px each) do not fit in one
        x = 10 + (k % 3) * (width - 20) / 3
        if k == 3:
            legend_y += 18
        parts.append(f'<rect x="{x:.1f}" y="{legend_y}" width="12" height="12" fill="{CATEGORY_COLOURS[code]}"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="{legend_y + 11}">{escape(CATEGORY_LABELS[code])}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
