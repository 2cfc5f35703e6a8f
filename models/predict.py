"""Predicted categories from the champion model and the customers' features, then the day-to-day hysteresis.

:func:`predict_categories` is the step; the task ``tasks.scoring.predict_categories``
wraps it (no retries: it touches neither network nor database).
:func:`stabilise_categories` holds yesterday's category where nothing
happened (``models.risk_decision.apply_hysteresis``); the task
``tasks.scoring.stabilise_categories`` wraps it (it reads the previous run
and the bill events from the database).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from models.pipeline import predict_proba_frame
from models.registry import Champion
from models.risk_decision import apply_hysteresis
from payer_scoring.bill_events import mark_bill_events
from payer_scoring.rules import CLASSES, PROBABILITY_COLUMNS, RISK_OUTCOMES, Rules

log = logging.getLogger(__name__)

PREDICTION_COLUMNS: list[str] = [
    "company_id", "customer_id", "category",
    *PROBABILITY_COLUMNS,
    "observed_category", "n_matured",
    "risk_score", "reason_codes", "q1", "q2", "q3",
]


def predict_categories(champion: Champion, features: pd.DataFrame, rules: Rules, *, threads: int = 1) -> pd.DataFrame:
    """One row per input row: category, class probabilities, observed category, n_matured.

    ``threads``: OpenMP threads (``settings.model_threads``).
    ``features``: the frame of :func:`payer_scoring.features.extract_features` (it
    must hold the champion's ``feature_columns``).  p_good, p_doubtful,
    p_forgetful, p_bad are float64 and sum to 1 per row.  ``category`` is
    ``new`` when n_matured < ``rules.min_matured_bills`` (whatever the model
    says), otherwise the champion's decision rule on its calibrated
    cumulative probabilities (``models.risk_decision``; a multiclass model
    registered before issue 11: the class with the highest probability).
    ``risk_score``: the calibrated probability of the rules' named outcome
    (``[risk] outcome``); ``reason_codes``: up to 3 codes for customers that
    are not ``new``; ``q1``..``q3``: the cumulative probabilities the
    hysteresis compares.  Raises ValueError when a feature column is missing
    or holds NaN.
    """
    missing = [c for c in champion.feature_columns if c not in features.columns]
    if missing:
        raise ValueError(f"features lack the model's input column(s) {missing}")
    inputs = features[champion.feature_columns]
    if inputs.isna().any().any():
        bad = [c for c in champion.feature_columns if inputs[c].isna().any()]
        raise ValueError(f"features hold NaN in {bad}")
    if champion.metadata.get("rules_version") not in (None, rules.version):
        log.warning(
            "champion %s was trained with rules %s; scoring with rules %s",
            champion.version, champion.metadata.get("rules_version"), rules.version,
        )
    n_matured = features["n_matured"].astype("int64").to_numpy()
    out = pd.DataFrame(
        {
            "company_id": features["company_id"].to_numpy(),
            "customer_id": features["customer_id"].to_numpy(),
        }
    )
    model = champion.model
    if hasattr(model, "score"):  # models.risk_scorer.RiskScorer (issue 11)
        scored = model.score(features.reset_index(drop=True), threads=threads)
        out["category"] = scored["category"].to_numpy()
        for c in CLASSES:
            out[f"p_{c}"] = scored[f"p_{c}"].to_numpy(dtype="float64")
        for c in ("risk_score", "q1", "q2", "q3"):
            out[c] = scored[c].to_numpy(dtype="float64")
        out["reason_codes"] = scored["reason_codes"].to_numpy()
    else:  # a multiclass model registered before issue 11: argmax, no reasons
        proba = predict_proba_frame(model, inputs, threads=threads)
        classes = np.asarray(CLASSES, dtype=object)
        argmax = classes[proba.to_numpy().argmax(axis=1)] if len(proba) else np.array([], dtype=object)
        out["category"] = np.where(n_matured < rules.min_matured_bills, "new", argmax).astype(object)
        for c in CLASSES:
            out[f"p_{c}"] = proba[c].to_numpy(dtype="float64")
        p = proba.to_numpy()
        q = np.column_stack([p[:, 1:].sum(axis=1), p[:, 2:].sum(axis=1), p[:, 3]]) if len(p) else np.zeros((0, 3))
        out["q1"], out["q2"], out["q3"] = q[:, 0], q[:, 1], q[:, 2]
        out["risk_score"] = np.clip(q[:, RISK_OUTCOMES.index(rules.risk_outcome)], 0.0, 1.0)
        out["reason_codes"] = pd.Series([[] for _ in range(len(out))], dtype=object)
    out["observed_category"] = features["observed_category"].to_numpy()
    out["n_matured"] = n_matured
    return out[PREDICTION_COLUMNS]


def stabilise_categories(
    scores: pd.DataFrame,
    previous: pd.DataFrame,
    bill_events: pd.DataFrame,
    cutoffs,
    margin: float,
) -> pd.DataFrame:
    """``scores`` with each customer's category held at the previous run's unless a bill event or the margin says otherwise.

    ``previous``: company_id, customer_id, category of the previous scoring
    run (empty: nothing is held); ``bill_events``: the customers with a bill
    issued, paid or matured since then (``payer_scoring.bill_events``);
    ``cutoffs`` the champion's decision rule, ``margin`` the rules'
    ``hysteresis_margin``.  Returns a copy with ``category`` replaced where
    held and a boolean ``category_held``; the other columns are unchanged.
    """
    out = scores.copy()
    if previous.empty or cutoffs is None:
        out["category_held"] = False
        return out
    today = out[["company_id", "customer_id", "category", "q1", "q2", "q3"]].copy()
    today["bill_event"] = mark_bill_events(today, bill_events).to_numpy()
    held = apply_hysteresis(previous, today, cutoffs, margin)
    out["category"] = held["category"].to_numpy()
    out["category_held"] = held["held"].to_numpy()
    return out
