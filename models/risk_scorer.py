"""The registered model: the calibrated chain, its decision rule, the named outcome and the reason-code reference.

:class:`RiskScorer` is what ``payer-scoring train`` saves (joblib) and the
daily run loads.  It is a drop-in for the old multiclass pipeline where only
class probabilities are asked (``classes_`` and ``predict_proba`` on a
matrix in ``feature_columns`` order), and adds :meth:`RiskScorer.score`: class
probabilities, the risk score, the cumulative probabilities, the category of
the decision rule and the reason codes.

:func:`fit_risk_scorer` fits both kinds of chain (monotone gradient boosting
and the sign-constrained logistic challenger) on the same snapshots, tunes
each one's decision rule on its calibration fold and keeps the kind with the
lower Brier score of the risk score on that fold (ties: higher AUC) - the
holdout is never used for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.risk_backtest import validation_metrics
from models.risk_decision import DecisionRule, tune_decision_rule
from models.risk_model import LINKS, RISK_FEATURES, fit_risk_model, link_targets
from models.risk_reasons import contributions, top_reasons
from payer_scoring.features import FEATURE_COLUMNS
from payer_scoring.rules import CLASSES, Rules

SCORE_COLUMNS: list[str] = [*(f"p_{c}" for c in CLASSES), "risk_score", "q1", "q2", "q3", "category", "reason_codes"]


def _threads(threads: int):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


@dataclass
class RiskScorer:
    """Fitted chain + decision rule; ``outcome`` names the risk score's threshold (``config/rules.toml`` [risk])."""

    model: object
    rule: DecisionRule
    outcome: str
    min_matured_bills: int
    kind: str
    selection: dict = field(default_factory=dict)
    classes_: np.ndarray = field(default_factory=lambda: np.asarray(CLASSES, dtype=object))

    @property
    def feature_columns(self) -> list[str]:
        """The input columns: every feature of the query (the chain reads :data:`RISK_FEATURES` of them by name).

        The whole feature row, so the drift check and the reference sample cover
        every feature whatever the chain uses (``late_share_trend`` is not a chain input).
        """
        return list(FEATURE_COLUMNS)

    def _frame(self, x) -> pd.DataFrame:
        if isinstance(x, pd.DataFrame):
            return x
        return pd.DataFrame(np.asarray(x, dtype=float), columns=FEATURE_COLUMNS)

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities (n x 4, ``CLASSES`` order) of a matrix or frame in ``feature_columns`` order."""
        return self.model.class_proba(self._frame(x)).to_numpy()

    def cumulative(self, features: pd.DataFrame) -> np.ndarray:
        return self.model.cumulative(features)

    def risk_score(self, features: pd.DataFrame) -> np.ndarray:
        return self.model.cumulative(features)[:, LINKS.index(self.outcome)]

    def score(self, features: pd.DataFrame, *, reasons: bool = True, threads: int = 1) -> pd.DataFrame:
        """One row per row of ``features`` (same index): :data:`SCORE_COLUMNS`.

        ``category`` is ``new`` below ``min_matured_bills`` matured bills,
        otherwise the decision rule's class.  ``reason_codes``: list of up to 3
        codes (:mod:`models.risk_reasons`) for customers that are not ``new``,
        [] otherwise.  Raises ValueError when a model input is missing or NaN.
        """
        with _threads(threads):
            q = self.model.cumulative(features) if len(features) else np.zeros((0, 3))
            out = pd.DataFrame(index=features.index)
            p = np.column_stack([1 - q[:, 0], q[:, 0] - q[:, 1], q[:, 1] - q[:, 2], q[:, 2]]) if len(q) else np.zeros((0, 4))
            for j, c in enumerate(CLASSES):
                out[f"p_{c}"] = p[:, j]
            out["risk_score"] = q[:, LINKS.index(self.outcome)] if len(q) else np.zeros(0)
            out["q1"], out["q2"], out["q3"] = (q[:, 0], q[:, 1], q[:, 2]) if len(q) else (np.zeros(0),) * 3
            judged = features["n_matured"].to_numpy() >= self.min_matured_bills
            rule_category = self.rule.decide(q) if len(q) else np.array([], dtype=object)
            out["category"] = np.where(judged, rule_category, "new").astype(object)
            codes: list[list[str]] = [[] for _ in range(len(features))]
            if reasons and judged.any():
                contrib = contributions(self.risk_score, features[judged], self.model.reference)
                for i, row_codes in zip(np.flatnonzero(judged), top_reasons(contrib)):
                    codes[i] = row_codes
            out["reason_codes"] = pd.Series(codes, index=features.index, dtype=object)
        return out[SCORE_COLUMNS]


def tune_rule(model, rules: Rules) -> DecisionRule:
    """The decision rule tuned on the calibration fold's customers that are not new (AUC floor: the observed category)."""
    v = model.validation[model.validation["n_matured"] >= rules.min_matured_bills]
    if len(v) < 50:
        v = model.validation
    y = link_targets(v["label"])[:, LINKS.index(rules.risk_outcome)]
    observed = v["observed_category"] if (v["observed_category"] != "new").all() else None
    return tune_decision_rule(v[["q1", "q2", "q3"]].to_numpy(), v["label"], outcome=y, observed=observed)


def fit_risk_scorer(frame: pd.DataFrame, rules: Rules, *, kinds=("hgb", "logistic"), random_state: int = 0,
                    threads: int = 1) -> RiskScorer:
    """Fit each kind of chain on the labelled snapshots ``frame`` (new customers included), keep the better on validation.

    ``frame``: snapshot, company_id, customer_id, n_matured, observed_category,
    the model inputs and label.  The choice: lower validation Brier of the
    risk score (rounded to 4 decimals), then higher validation AUC.
    ``selection`` on the result records every kind's validation figures.
    Raises ValueError when the snapshots cannot fit a chain (fewer than 2
    dates, a link with a single outcome).
    """
    fitted, selection = {}, {}
    errors = {}
    with _threads(threads):
        for kind in kinds:
            try:
                model = fit_risk_model(frame, rules, kind=kind, random_state=random_state)
            except ValueError as exc:
                errors[kind] = str(exc)
                continue
            rule = tune_rule(model, rules)
            fitted[kind] = (model, rule)
            selection[kind] = {
                "validation": validation_metrics(model, rules.risk_outcome),
                "cutoffs": list(rule.cutoffs),
                "validation_macro_f1": rule.validation_macro_f1,
                "calibration": model.calibration,
            }
    if not fitted:
        raise ValueError("; ".join(f"{k}: {v}" for k, v in errors.items()))
    def key(kind):
        v = selection[kind]["validation"]
        return (round(float(np.nan_to_num(v["brier"], nan=1.0)), 4), -float(np.nan_to_num(v["auc"], nan=0.5)))

    chosen = min(fitted, key=key)
    model, rule = fitted[chosen]
    return RiskScorer(
        model=model, rule=rule, outcome=rules.risk_outcome, min_matured_bills=rules.min_matured_bills,
        kind=chosen, selection={"chosen": chosen, **selection, **({"errors": errors} if errors else {})},
    )
