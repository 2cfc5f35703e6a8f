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


# --------------------------------------------------------------- calibration curve and category shares
from payer_scoring.charts import PLOT, calibration_chart_svg, category_shares_svg  # noqa: E402


def test_calibration_dots_sit_at_score_and_outcome_rate():
    bins = [{"n": 100, "mean_score": 0.05, "outcome_rate": 0.04}, {"n": 25, "mean_score": 0.5, "outcome_rate": 0.75}]
    svg = ET.fromstring(calibration_chart_svg(bins, "cal"))
    dots = [(float(c.get("cx")), float(c.get("cy")), float(c.get("r"))) for c in svg.iter(f"{NS}circle")]
    # plot square: x from 60 (score 0) to 60 + PLOT (score 1); y from 40 + PLOT (rate 0) up to 40 (rate 1)
    assert [(round(x, 1), round(y, 1)) for x, y, _ in dots] == [
        (round(60 + PLOT * 0.05, 1), round(40 + PLOT * 0.96, 1)),
        (round(60 + PLOT * 0.5, 1), round(40 + PLOT * 0.25, 1)),
    ]
    assert dots[0][2] == 10.0 and dots[1][2] == 6.5  # 3 + 7 * sqrt(n / biggest)
    diagonal = next(l for l in svg.iter(f"{NS}line") if l.get("stroke-dasharray"))
    assert (float(diagonal.get("x1")), float(diagonal.get("y1")), float(diagonal.get("x2")), float(diagonal.get("y2"))) == (
        60, 40 + PLOT, 60 + PLOT, 40)


def test_category_shares_are_stacked_in_code_order_and_fill_the_bar():
    weeks = [{"as_of": "2026-11-23", "counts": {"bad": 25, "new": 50, "good": 25}},
             {"as_of": "2026-11-30", "counts": {"good": 10}}]
    svg = ET.fromstring(category_shares_svg(weeks, "shares"))
    segments = [r for r in svg.iter(f"{NS}rect") if r.find(f"{NS}title") is not None]
    first = [(r.find(f"{NS}title").text, round(float(r.get("x")), 1), round(float(r.get("width")), 1))
             for r in segments if r.get("y") == "43"]
    # new, good, ..., bad: 50 %, 25 %, 25 % of the bar, each starting where the previous ended
    assert first == [("new: 50.0%", LABEL_WIDTH, BAR_WIDTH * 0.5), ("good: 25.0%", LABEL_WIDTH + BAR_WIDTH * 0.5, BAR_WIDTH * 0.25),
                     ("bad: 25.0%", LABEL_WIDTH + BAR_WIDTH * 0.75, BAR_WIDTH * 0.25)]
    second = [r for r in segments if r.get("y") == "65"]
    assert len(second) == 1 and float(second[0].get("width")) == BAR_WIDTH
    assert "2026-11-30 (10)" in [t.text for t in svg.iter(f"{NS}text")]


def test_reliability_bins_are_the_ece_bins():
    import numpy as np

    from models.risk_backtest import ece, reliability

    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.08, 0.55, 0.58, 0.95, 1.0])
    bins = reliability(y, p)
    assert [(b["lower"], b["n"]) for b in bins] == [(0.0, 2), (0.5, 2), (0.9, 2)]  # 1.0 falls in the last bin
    assert [round(b["mean_score"], 3) for b in bins] == [0.065, 0.565, 0.975]
    assert [b["outcome_rate"] for b in bins] == [0.0, 1.0, 0.5]
    # the ECE is the n-weighted gap of these bins
    assert ece(y, p) == sum(b["n"] / 6 * abs(b["mean_score"] - b["outcome_rate"]) for b in bins)


def test_weekly_shares_table_gives_the_exact_shares():
    from payer_scoring.reports import weekly_shares_markdown

    table = weekly_shares_markdown([{"as_of": "2026-11-30", "counts": {"good": 1, "bad": 3}}]).splitlines()
    assert table[0] == "| as of | new | good | doubtful | forgetful | bad | customers |"
    assert table[2] == "| 2026-11-30 | 0.0 % | 25.0 % | 0.0 % | 0.0 % | 75.0 % | 4 |"
