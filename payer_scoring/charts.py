"""Pictures for the Prefect artifacts, drawn as plain SVG (no plotting library, nothing fetched).

:func:`psi_chart_svg` draws the weekly retrain's drift table as horizontal
bars with the PSI thresholds of :mod:`payer_scoring.drift` (0.10 moderate,
0.25 major); :func:`markdown_image` embeds an SVG in a markdown artifact as a
``data:`` URI, which the Prefect UI renders as an image.
"""

from __future__ import annotations

import base64
from html import escape

from payer_scoring.drift import PSI_MAJOR, PSI_MODERATE

ROW_HEIGHT = 22
LABEL_WIDTH = 190
BAR_WIDTH = 420
COLOURS = {"drifted": "#c0392b", "noise": "#e6a23c", "stable": "#6b8e9f"}


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
