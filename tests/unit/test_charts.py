"""The drift picture: bar lengths proportional to PSI, threshold lines where drift.py puts them."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

from payer_scoring.charts import BAR_WIDTH, LABEL_WIDTH, markdown_image, psi_chart_svg

NS = "{http://www.w3.org/2000/svg}"
ROWS = [
    {"feature": "late_share", "psi": 0.6, "drifted": True},
    {"feature": "tenure_days", "psi": 0.15, "drifted": False},
    {"feature": "dpd_mean_days", "psi": 0.03, "drifted": False},
    {"feature": "empty <&>", "psi": None, "drifted": False},
]


def test_bars_are_proportional_and_coloured_by_drift():
    svg = ET.fromstring(psi_chart_svg(ROWS, "drift"))
    bars = [r for r in svg.iter(f"{NS}rect") if r.get("x") == str(LABEL_WIDTH)]
    # axis runs 0..0.6 (the largest PSI, above the 0.3 minimum): 0.15 is a quarter of the width
    assert [round(float(b.get("width")), 1) for b in bars] == [BAR_WIDTH * 1.0, BAR_WIDTH * 0.25, BAR_WIDTH * 0.05]
    assert [b.get("fill") for b in bars] == ["#c0392b", "#e6a23c", "#6b8e9f"]
    lines = {round(float(l.get("x1")), 1) for l in svg.iter(f"{NS}line") if l.get("stroke-dasharray")}
    assert lines == {round(LABEL_WIDTH + BAR_WIDTH * 0.10 / 0.6, 1), round(LABEL_WIDTH + BAR_WIDTH * 0.25 / 0.6, 1)}
    texts = [t.text for t in svg.iter(f"{NS}text")]
    assert "empty <&>" in texts and "n/a" in texts  # escaped in the SVG, read back intact


def test_markdown_image_embeds_the_svg_as_a_data_uri():
    svg = psi_chart_svg(ROWS[:1], "t")
    md = markdown_image(svg, "PSI")
    encoded = re.fullmatch(r"!\[PSI\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", md).group(1)
    assert base64.b64decode(encoded).decode() == svg
