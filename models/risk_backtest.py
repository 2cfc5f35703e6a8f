"""Backtest of the risk score and the category on realized outcomes, plus monotonicity and flip counts.

Plain functions over frames (no database, no Prefect).  The realized outcome
of a customer scored at T is the named outcome of the risk score computed on
what the customer did in (T, T + H]: window late share above the rules'
threshold ``outcome`` (``config/rules.toml`` ``[risk] outcome``), i.e. the
label's class is above that threshold.  Only customers with a bill maturing
in the window have an outcome.

Metrics (:func:`backtest`), on the customers *categorised* at T (not ``new``:
the population where the observed category exists) unless stated:

* ``risk_auc``: ROC AUC of the risk score for the realized outcome;
* ``observed_auc``: AUC of the observed category as an ordinal score
  (good 0 < doubtful 1 < forgetful 2 < bad 3; ties count half);
* ``category_auc``: the same for the published (predicted) category;
* ``ece``: expected calibration error of the risk score, 10 **equal-width**
  bins on [0, 1] (sum over bins of the bin's share x |mean score - outcome
  rate|); ``ece_equal_count`` the same with 10 equal-count bins (quantiles);
* ``brier``: mean squared error of the risk score;
* ``bad_rate``: realized outcome rate (and count) per observed and per
  predicted category;
* ``macro_f1``: of the predicted category against the window label (4
  classes), and of the observed category (persistence);
* ``log_loss``: natural-log multiclass loss of the class probabilities
  against the label, for the model, the transition baseline
  (P(label | observed category) on the training snapshots, add-one smoothed,
  :func:`models.evaluation.transition_proba`) and a multinomial logistic
  regression on the same training rows (:func:`models.risk_model.logistic_baseline`).

The risk score is also reported on every customer with an outcome (``all``,
``new`` ones included) and on the ``new`` ones alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, roc_auc_score

from models.evaluation import PROBABILITY_FLOOR, baseline_statistics, transition_proba
from models.risk_decision import DecisionRule
from models.risk_model import LINKS, MONOTONE, RiskModel, link_targets
from payer_scoring.rules import CLASSES, Rules

ORDINAL = {c: k for k, c in enumerate(CLASSES)}


def _bins(p: np.ndarray, bins: int, strategy: str) -> np.ndarray:
    """Bin index (0 .. bins - 1) of each score: ``width`` equal-width bins on [0, 1] (1.0 in the last), ``count`` equal-count by rank."""
    if strategy == "width":
        return np.minimum((p * bins).astype(int), bins - 1)
    return np.minimum((np.argsort(np.argsort(p, kind="stable"), kind="stable") * bins) // len(p), bins - 1)


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10, strategy: str = "width") -> float:
    """Expected calibration error: sum_b (n_b / n) |mean p_b - mean y_b| over ``bins`` bins.

    ``strategy``: ``width`` (equal-width bins on [0, 1]) or ``count`` (equal-count, by rank).
    """
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if not len(y):
        return float("nan")
    index = _bins(p, bins, strategy)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(total)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """The calibration curve behind :func:`ece`'s equal-width bins: one dict per non-empty bin.

    Each: ``lower``/``upper`` (the bin's score range, share 0-1), ``n``
    (customers), ``mean_score`` and ``outcome_rate`` (share 0-1).  A
    calibrated score has ``mean_score`` close to ``outcome_rate`` in every bin.
    """
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    index = _bins(p, bins, "width")
    return [
        {"lower": b / bins, "upper": (b + 1) / bins, "n": int((index == b).sum()),
         "mean_score": float(p[index == b].mean()), "outcome_rate": float(y[index == b].mean())}
        for b in range(bins) if (index == b).any()
    ]


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when only one outcome occurs."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(score, dtype=float)))


def multiclass_log_loss(labels, proba: np.ndarray) -> float:
    """Mean -ln p[true class] (columns in ``CLASSES`` order, clipped at the evaluation floor)."""
    p = np.clip(np.asarray(proba, dtype=float), PROBABILITY_FLOOR, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    idx = np.array([ORDINAL[c] for c in labels], dtype=int)
    return float(-np.log(p[np.arange(len(idx)), idx]).mean()) if len(idx) else float("nan")


def macro_f1(labels, predicted) -> float:
    y, pred = np.asarray(labels, dtype=object), np.asarray(predicted, dtype=object)
    present = [c for c in CLASSES if c in set(y) | set(pred)]
    return float(f1_score(y, pred, labels=present, average="macro", zero_division=0)) if len(y) else float("nan")


def rate_by(category: np.ndarray, outcome: np.ndarray) -> dict:
    """{category: {'n', 'outcome_rate'}} in ``CLASSES`` order (categories present only)."""
    frame = pd.DataFrame({"c": category, "y": outcome})
    out = {}
    for c in CLASSES:
        part = frame[frame["c"] == c]
        if len(part):
            out[c] = {"n": int(len(part)), "outcome_rate": round(float(part["y"].mean()), 4)}
    return out


def score_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    """AUC, Brier, ECE (equal width and equal count), mean score and outcome rate of one risk score."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return {
        "n": int(len(y)),
        "outcome_rate": float(y.mean()) if len(y) else float("nan"),
        "mean_score": float(p.mean()) if len(p) else float("nan"),
        "auc": auc(y, p),
        "brier": float(np.mean((p - y) ** 2)) if len(y) else float("nan"),
        "ece": ece(y, p, strategy="width"),
        "ece_equal_count": ece(y, p, strategy="count"),
        "reliability": reliability(y, p) if len(y) else [],
    }


def backtest(
    model: RiskModel,
    rule: DecisionRule,
    holdout: pd.DataFrame,
    train: pd.DataFrame | None,
    rules: Rules,
    outcome: str,
    *,
    logistic=None,
    stats: dict | None = None,
) -> dict:
    """Metrics of the module docstring for ``model`` + ``rule`` on ``holdout`` (labelled snapshot rows).

    ``train``: the training rows (baselines are fitted on its customers not
    ``new``); ``logistic``: a fitted :func:`models.risk_model.logistic_baseline`
    (None: fitted here on ``train``).  With ``train`` None the logistic
    baseline is left out (None) and the transition baseline uses ``stats``
    (:func:`models.evaluation.baseline_statistics`; None: left out too).
    """
    from models.risk_model import logistic_baseline

    k = LINKS.index(outcome)
    categorised = (holdout["n_matured"] >= rules.min_matured_bills).to_numpy()
    y_all = link_targets(holdout["label"])[:, k]
    q = model.cumulative(holdout)
    risk = q[:, k]
    h = holdout[categorised]
    y, r, qc = y_all[categorised], risk[categorised], q[categorised]
    predicted = rule.decide(qc)
    observed = h["observed_category"].to_numpy(dtype=object)
    proba = model.class_proba(h).to_numpy()
    if train is not None:
        train_cat = train[train["n_matured"] >= rules.min_matured_bills]
        stats = baseline_statistics(train_cat["observed_category"], train_cat["label"])
        if logistic is None:
            logistic = logistic_baseline(train_cat)
    argmax = np.asarray(CLASSES, dtype=object)[proba.argmax(axis=1)] if len(proba) else np.array([], dtype=object)
    expected = proba @ np.arange(len(CLASSES))
    return {
        "outcome": f"window late share > {outcome} ({dict(zip(LINKS, rules.thresholds))[outcome]})",
        "n_holdout": int(len(holdout)),
        "n_categorised": int(categorised.sum()),
        "risk": score_metrics(y, r),
        "risk_all": score_metrics(y_all, risk),
        "risk_new": score_metrics(y_all[~categorised], risk[~categorised]),
        "observed_auc": auc(y, np.array([ORDINAL[c] for c in observed])),
        "category_auc": auc(y, np.array([ORDINAL[c] for c in predicted])),
        "expected_class_auc": auc(y, expected),
        "argmax_category_auc": auc(y, np.array([ORDINAL[c] for c in argmax])),
        "bad_rate_observed": rate_by(observed, y),
        "bad_rate_predicted": rate_by(predicted, y),
        "macro_f1": {
            "category": macro_f1(h["label"], predicted),
            "argmax": macro_f1(h["label"], argmax),
            "observed": macro_f1(h["label"], observed),
        },
        "predicted_counts": {c: int((predicted == c).sum()) for c in CLASSES},
        "label_counts": {c: int((h["label"] == c).sum()) for c in CLASSES},
        "log_loss": {
            "model": multiclass_log_loss(h["label"], proba),
            "transition": multiclass_log_loss(h["label"], transition_proba(h["observed_category"], stats))
            if stats is not None else None,
            "logistic": multiclass_log_loss(h["label"], logistic.predict_class_proba(h))
            if logistic is not None and len(h) else None,
        },
        "cutoffs": list(rule.cutoffs),
        "validation_macro_f1": rule.validation_macro_f1,
    }


def json_safe(value):
    """``value`` with every NaN or infinite float replaced by None (jsonb refuses NaN), numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def outcome_rate_by_observed(stats: dict, outcome: str) -> dict:
    """{observed category: P(label above ``outcome``'s threshold)} from a training transition table (baseline_statistics)."""
    k = LINKS.index(outcome)
    return {o: float(sum(row[c] for c in CLASSES[k + 1:])) for o, row in stats["transition"].items()}


def validation_metrics(model: RiskModel, outcome: str) -> dict:
    """Risk-score metrics on the calibration fold's out-of-fold probabilities (for choosing a kind)."""
    v = model.validation
    k = LINKS.index(outcome)
    y = link_targets(v["label"])[:, k]
    return score_metrics(y, v[f"q{k + 1}"].to_numpy())


def _bad_move(name: str, x: pd.Series) -> pd.Series:
    """The feature moved "the bad way" (its monotone direction): shares +0.2 (<= 1), counts +1, days +30, BRL doubled + 100."""
    sign = MONOTONE[name]
    if name.endswith("_share") or "late_share" in name:
        return np.minimum(1.0, x + 0.2) if sign > 0 else np.maximum(0.0, x - 0.2)
    if name.endswith("_days"):
        return x + 30 if sign > 0 else np.maximum(0.0, x - 30)
    if name.endswith("_brl"):
        return x * 2 + 100 if sign > 0 else x / 2
    return x + 1 if sign > 0 else np.maximum(0.0, x - 1)


def one_more_late_bill(features: pd.DataFrame) -> pd.DataFrame:
    """Every customer with an on-time matured bill gets one of them late instead (rows without one unchanged).

    n_late + 1, late_share + 1/n_matured, an early-paid bill fewer when there
    is one, recent and 90-day shares up by one bill in 3 / in the 90-day
    count, days since the last late bill 0.  Days past due stay (a bill paid a
    day late adds ~0 days).
    """
    out = features.copy()
    n = out["n_matured_bills"]
    can = (n > out["n_late"]).to_numpy()
    out.loc[can, "n_late"] += 1
    out.loc[can, "late_share"] = out.loc[can, "n_late"] / n[can]
    out.loc[can, "n_paid_early"] = np.maximum(0, out.loc[can, "n_paid_early"] - 1)
    out.loc[can, "recent3_late_share"] = np.minimum(1.0, out.loc[can, "recent3_late_share"] + 1 / 3)
    m90 = out["n_matured_90d"].clip(lower=1)
    out.loc[can, "late_share_90d"] = np.minimum(1.0, out.loc[can, "late_share_90d"] + 1 / m90[can])
    out.loc[can, "since_last_late_days"] = 0.0
    if "late_share_trend" in out:
        out["late_share_trend"] = out["late_share_90d"] - out["late_share_prev90d"]
    return out


def monotonicity_violations(risk_fn, category_fn, features: pd.DataFrame) -> dict:
    """Rows whose risk drops (or category moves towards good) when each constrained feature moves the bad way.

    ``risk_fn(frame) -> array``; ``category_fn(frame) -> class names`` (None:
    not checked).  Returns {feature: {'moved', 'risk_lower', 'category_better'}}
    plus the combined move :func:`one_more_late_bill`.  Tolerance 1e-12.
    """
    base = np.asarray(risk_fn(features), dtype=float)
    base_cat = np.array([ORDINAL[c] for c in category_fn(features)]) if category_fn else None
    moves = {name: None for name, sign in MONOTONE.items() if sign}
    moves["one_more_late_bill"] = None
    out = {}
    for name in moves:
        if name == "one_more_late_bill":
            moved = one_more_late_bill(features)
        else:
            moved = features.copy()
            moved[name] = _bad_move(name, features[name])
        changed = (moved[list(MONOTONE)].to_numpy() != features[list(MONOTONE)].to_numpy()).any(axis=1)
        after = np.asarray(risk_fn(moved), dtype=float)
        row = {"moved": int(changed.sum()), "risk_lower": int((after < base - 1e-12).sum())}
        if category_fn:
            after_cat = np.array([ORDINAL[c] for c in category_fn(moved)])
            row["category_better"] = int((after_cat < base_cat).sum())
        out[name] = row
    return out


def flip_rates(days: list[pd.DataFrame], cutoffs, margin: float) -> dict:
    """Day-to-day category changes among customers categorised on both days, without and with hysteresis.

    ``days``: one frame per consecutive as-of date (oldest first) with
    company_id, customer_id, category (the rule's, or ``new``), q1..q3 and
    bill_event (since the previous date).  Returns per-day lists and means of
    the share of changes, and of changes without a bill event.
    """
    from models.risk_decision import apply_hysteresis

    keys = ["company_id", "customer_id"]
    rows = {"raw": [], "raw_no_event": [], "hysteresis": [], "hysteresis_no_event": [], "categorised": []}
    published = days[0][keys + ["category"]]
    prev_raw = days[0][keys + ["category"]]
    for today in days[1:]:
        held = apply_hysteresis(published, today, cutoffs, margin)
        for name, prev, cur in (("raw", prev_raw, today), ("hysteresis", published, held)):
            m = cur[keys + ["category", "bill_event"]].merge(prev.rename(columns={"category": "_prev"}), on=keys)
            both = (m["category"] != "new") & (m["_prev"] != "new")
            change = both & (m["category"] != m["_prev"])
            n = max(int(both.sum()), 1)
            rows[name].append(float(change.sum()) / n)
            rows[f"{name}_no_event"].append(float((change & ~m["bill_event"].astype(bool)).sum()) / n)
            if name == "raw":
                rows["categorised"].append(int(both.sum()))
        published = held[keys + ["category"]]
        prev_raw = today[keys + ["category"]]
    summary = {f"{k}_mean": float(np.mean(v)) if v else float("nan") for k, v in rows.items() if k != "categorised"}
    summary.update({f"{k}_max": float(np.max(v)) if v else float("nan") for k, v in rows.items() if k != "categorised"})
    summary["days"] = len(days) - 1
    summary["per_day"] = rows
    return summary


def scored_backtest(
    scored: pd.DataFrame, labels: pd.DataFrame, rules: Rules, outcome: str | None = None, observed_rate: dict | None = None
) -> dict:
    """Backtest of one past scoring run: what was published at T against what customers did in (T, T + H].

    ``scored``: the history rows of the run (company_id, customer_id,
    category, observed_category, risk_score (may be NULL on rows of the old
    model), model_version); ``labels``: :func:`payer_scoring.labels.compute_labels`
    at T.  Customers without a bill maturing in the window have no outcome and
    are left out.  Returns n_scored, n_with_outcome, the outcome rate, and for
    customers not ``new``: ``risk`` (:func:`score_metrics` of the risk score),
    ``observed`` (the same metrics for the observed category turned into a
    probability by ``observed_rate``, {category: outcome rate}, e.g. the
    champion's training transition table; None: AUC only), ``observed_auc``
    and ``category_auc`` (each category as an ordinal score), bad rate per
    published and per observed category, macro-F1 of the published and of the
    observed category against the label; ``risk_all`` covers every customer
    with an outcome (``new`` ones included).
    """
    outcome = outcome or rules.risk_outcome
    k = LINKS.index(outcome)
    joined = scored.merge(labels[["company_id", "customer_id", "label"]], on=["company_id", "customer_id"], how="inner")
    judged = joined[(joined["category"] != "new") & (joined["observed_category"] != "new")]
    y = link_targets(judged["label"])[:, k] if len(judged) else np.zeros(0, dtype=int)
    y_all = link_targets(joined["label"])[:, k] if len(joined) else np.zeros(0, dtype=int)
    has_risk = judged["risk_score"].notna().to_numpy() if "risk_score" in judged else np.zeros(len(judged), dtype=bool)
    has_risk_all = joined["risk_score"].notna().to_numpy() if "risk_score" in joined else np.zeros(len(joined), dtype=bool)
    category = judged["category"].to_numpy(dtype=object)
    observed = judged["observed_category"].to_numpy(dtype=object)
    versions = scored["model_version"].value_counts() if "model_version" in scored else pd.Series(dtype=int)
    return {
        "outcome": outcome,
        "model_version": str(versions.index[0]) if len(versions) else None,
        "n_scored": int(len(scored)),
        "n_with_outcome": int(len(joined)),
        "n_judged": int(len(judged)),
        "outcome_rate": float(y.mean()) if len(y) else None,
        "risk": score_metrics(y[has_risk], judged["risk_score"].to_numpy(dtype=float)[has_risk]) if has_risk.any() else None,
        "risk_all": score_metrics(y_all[has_risk_all], joined["risk_score"].to_numpy(dtype=float)[has_risk_all])
        if has_risk_all.any() else None,
        "observed": score_metrics(y, np.array([observed_rate[c] for c in observed], dtype=float))
        if observed_rate and len(y) else None,
        "observed_auc": auc(y, np.array([ORDINAL[c] for c in observed])) if len(y) else None,
        "category_auc": auc(y, np.array([ORDINAL[c] for c in category])) if len(y) else None,
        "bad_rate_category": rate_by(category, y),
        "bad_rate_observed": rate_by(observed, y),
        "macro_f1": {
            "category": macro_f1(judged["label"], category) if len(judged) else None,
            "observed": macro_f1(judged["label"], observed) if len(judged) else None,
        },
    }
