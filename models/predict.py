"""Predicted categories from the champion model and the customers' features.

:func:`predict_categories` is the step; the task ``tasks.scoring.predict_categories``
wraps it (no retries: it touches neither network nor database).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from models.pipeline import predict_proba_frame
from models.registry import Champion
from payer_scoring.rules import CLASSES, PROBABILITY_COLUMNS, Rules

log = logging.getLogger(__name__)

PREDICTION_COLUMNS: list[str] = [
    "company_id", "customer_id", "category",
    *PROBABILITY_COLUMNS,
    "observed_category", "n_matured",
]


def predict_categories(champion: Champion, features: pd.DataFrame, rules: Rules, *, threads: int = 1) -> pd.DataFrame:
    """One row per input row: category, class probabilities, observed category, n_matured.

    ``threads``: OpenMP threads (``settings.model_threads``).
    ``features``: the frame of :func:`payer_scoring.features.extract_features` (it
    must hold the champion's ``feature_columns``).  p_good, p_doubtful,
    p_forgetful, p_bad are float64 and sum to 1 per row.  ``category`` is
    ``new`` when n_matured < ``rules.min_matured_bills`` (whatever the model
    says), otherwise the class with the highest probability (ties: the first
    in good/doubtful/forgetful/bad order).  Raises ValueError when a feature
    column is missing or holds NaN.
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
    proba = predict_proba_frame(champion.model, inputs, threads=threads)
    classes = np.asarray(CLASSES, dtype=object)
    argmax = classes[proba.to_numpy().argmax(axis=1)] if len(proba) else np.array([], dtype=object)
    n_matured = features["n_matured"].astype("int64").to_numpy()
    out = pd.DataFrame(
        {
            "company_id": features["company_id"].to_numpy(),
            "customer_id": features["customer_id"].to_numpy(),
            "category": np.where(n_matured < rules.min_matured_bills, "new", argmax).astype(object),
        }
    )
    for c in CLASSES:
        out[f"p_{c}"] = proba[c].to_numpy(dtype="float64")
    out["observed_category"] = features["observed_category"].to_numpy()
    out["n_matured"] = n_matured
    return out[PREDICTION_COLUMNS]
