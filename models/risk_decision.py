"""The category from the calibrated chain: a threshold rule on q1 >= q2 >= q3, and day-to-day hysteresis.

Decision rule.  With the chain's cumulative probabilities
q1 = P(share > good_max), q2 = P(share > doubtful_max), q3 = P(share > forgetful_max)
and cut-offs c = (c1, c2, c3):

    bad        if q3 >= c3
    forgetful  elif q2 >= c2
    doubtful   elif q1 >= c1
    good       otherwise

Why not the argmax of the class probabilities: the middle classes are rarely
the most probable single class (on generated data ``doubtful`` is the argmax
for about 2 % of customers although 3-5 % of outcomes are doubtful), so the
argmax almost never says ``doubtful``.  The threshold rule says "doubtful"
as soon as the evidence of *some* lateness is strong enough, and it is
monotone: each q is non-decreasing in lateness (see :mod:`models.risk_model`),
so more lateness can only move the category up the order good < doubtful <
forgetful < bad.

The cut-offs are tuned for macro-F1 of the 4 classes on the validation fold:
the calibration snapshots' out-of-fold calibrated probabilities
(``RiskModel.validation``), never the holdout.  Coordinate ascent over a grid
of 0.02 .. 0.98 (step 0.01), three passes, starting from 0.5; ties keep the
lower cut-off.  c1 >= c2 >= c3 is not required (the "elif" chain makes the
rule well defined for any cut-offs).

Hysteresis (:func:`apply_hysteresis`).  Yesterday's category is kept unless
(a) the customer had a bill event between the two as-of dates (a bill
issued, paid or matured: ``sql/bill_events.sql``), or (b) the new category
still wins with every cut-off moved ``margin`` (probability points, from
``config/rules.toml`` ``[risk] hysteresis_margin``) against the move: going
up to a category needs its q to clear its cut-off by ``margin``, going down
needs the old category's q to fall ``margin`` below its cut-off.  This is the
usual dead band of a thermostat, applied to the rule's own evidence (the q's),
because the rule is a threshold rule and not an argmax.  Without a bill event
a customer's features still move every day (days past due of an unpaid bill
grow, 90-day windows slide), so without the band the category would follow
noise around the cut-offs.  ``new`` (too little history) and the first
scoring of a customer are never held back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from payer_scoring.rules import CLASSES

GRID = np.round(np.arange(0.02, 0.985, 0.01), 4)
# The category's AUC must beat the observed category's on the validation fold by this much.
AUC_MARGIN = 0.02


@dataclass(frozen=True)
class DecisionRule:
    """Cut-offs (c1, c2, c3) on (q1, q2, q3); ``validation_macro_f1`` is the tuned fold's score."""

    cutoffs: tuple[float, float, float]
    validation_macro_f1: float = float("nan")

    def decide(self, q: np.ndarray) -> np.ndarray:
        """Class name per row of cumulative probabilities ``q`` (n x 3)."""
        return decide(q, self.cutoffs)


def decide(q: np.ndarray, cutoffs) -> np.ndarray:
    """good/doubtful/forgetful/bad per row by the threshold rule of the module docstring."""
    q = np.asarray(q, dtype=float).reshape(-1, 3)
    c1, c2, c3 = cutoffs
    code = np.where(q[:, 2] >= c3, 3, np.where(q[:, 1] >= c2, 2, np.where(q[:, 0] >= c1, 1, 0)))
    return np.asarray(CLASSES, dtype=object)[code]


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    labels = [c for c in CLASSES if c in set(y) | set(pred)]
    return float(f1_score(y, pred, labels=labels, average="macro", zero_division=0))


def _ordinal_auc(y: np.ndarray, category: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.array([CLASSES.index(c) for c in category])))


def tune_decision_rule(
    q: np.ndarray,
    labels,
    *,
    outcome: np.ndarray | None = None,
    observed=None,
    auc_margin: float = AUC_MARGIN,
    passes: int = 3,
) -> DecisionRule:
    """Cut-offs maximising macro-F1 of :func:`decide` against ``labels`` (coordinate ascent on :data:`GRID`).

    With ``outcome`` (0/1 realized risk outcome per row) and ``observed``
    (the observed category per row), cut-offs whose category ranks the
    outcome worse (ROC AUC of the category as an ordinal score) than the
    observed category does plus ``auc_margin`` are penalised (10 x the
    shortfall): the category billing reads must carry at least the
    information of the rule on history, with a margin because the validation
    fold is older than the scoring date and a floor met exactly there was
    missed on the later holdout.  Pass the validation rows of customers that
    are not ``new``.
    """
    y = np.asarray(labels, dtype=object)
    floor = None
    if outcome is not None and observed is not None:
        outcome = np.asarray(outcome)
        floor = _ordinal_auc(outcome, np.asarray(observed, dtype=object))
        if np.isnan(floor):
            floor = None

    def objective(cut) -> float:
        pred = decide(q, cut)
        score = _macro_f1(y, pred)
        if floor is not None:
            score -= 10 * max(0.0, floor + auc_margin - _ordinal_auc(outcome, pred))
        return score

    cut = [0.5, 0.5, 0.5]
    best = objective(cut)
    for _ in range(passes):
        changed = False
        for j in range(3):
            for value in GRID:
                trial = list(cut)
                trial[j] = float(value)
                score = objective(trial)
                if score > best + 1e-12:
                    best, cut, changed = score, trial, True
        if not changed:
            break
    return DecisionRule(cutoffs=tuple(cut), validation_macro_f1=_macro_f1(y, decide(q, cut)))


def apply_hysteresis(
    previous: pd.DataFrame,
    today: pd.DataFrame,
    cutoffs,
    margin: float,
) -> pd.DataFrame:
    """Today's rows with ``category`` held at yesterday's unless a bill event or the margin says otherwise.

    ``today``: company_id, customer_id, category (the rule's category, or
    ``new``), q1, q2, q3 and bill_event (bool: a bill issued, paid or matured
    since the previous as-of).  ``previous``: company_id, customer_id,
    category (yesterday's published one).  Returns a copy of ``today`` with
    ``category`` replaced where it is held, plus ``category_raw`` (the rule's
    category before hysteresis) and ``held`` (bool).  Customers without a
    previous row, ``new`` today or yesterday, or with a bill event take
    today's category.
    """
    out = today.copy()
    out["category_raw"] = out["category"]
    prev = previous[["company_id", "customer_id", "category"]].rename(columns={"category": "_prev"})
    merged = out.merge(prev, on=["company_id", "customer_id"], how="left")
    q = merged[["q1", "q2", "q3"]].to_numpy(dtype=float)
    c = np.asarray(cutoffs, dtype=float)
    up = decide(q, c + margin)      # hardest to go up: the lowest category the evidence clearly supports
    down = decide(q, c - margin)    # easiest to go up: the highest category the evidence still allows
    prev_cat = merged["_prev"].to_numpy(dtype=object)
    raw = merged["category"].to_numpy(dtype=object)
    eligible = (
        pd.notna(merged["_prev"]).to_numpy()
        & (raw != "new")
        & (prev_cat != "new")
        & ~merged["bill_event"].fillna(True).to_numpy(dtype=bool)
    )
    # keep the old category when it lies between the two bands' categories, else move to the nearer band
    codes = {c: k for k, c in enumerate(CLASSES)}
    lo = np.array([codes[c] for c in up])
    hi = np.array([codes[c] for c in down])
    old = np.array([codes.get(c, -1) for c in prev_cat])
    eligible &= old >= 0
    new_cat = raw.copy()
    kept = np.clip(old, lo, hi)
    new_cat[eligible] = np.asarray(CLASSES, dtype=object)[kept[eligible]]
    out["category"] = new_cat
    out["held"] = out["category"].to_numpy(dtype=object) != out["category_raw"].to_numpy(dtype=object)
    return out
