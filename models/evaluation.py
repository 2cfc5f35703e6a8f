"""Holdout metrics of the model and of the two baselines it must beat.

Baselines (same holdout rows as the model):

* ``persistence``: the observed category at T carried forward.  Its
  probabilities are a smoothed one-hot: ``a`` on the carried-forward class and
  ``(1 - a) / 3`` on each other class, where ``a`` is how often persistence was
  right on the TRAINING snapshots (clipped to [0.25, 0.999]).  That is the
  log-loss-optimal smoothing of a one-hot forecast with that accuracy, so the
  baseline is not a straw man (a raw one-hot would score infinite log-loss).
* ``persistence_transition`` (reported as a stronger reference): the class
  probabilities are the training set's transition matrix
  P(label | observed category) with add-one smoothing; its class is the
  argmax of that row.
* ``majority``: always the most frequent training label; probabilities are
  the training label frequencies.

Metrics: macro-F1 (over the classes present in the truth or the
predictions) and balanced accuracy of the argmax class, multi-class
log-loss (natural log) of the probabilities, per-class recall and the
confusion matrix (rows: true class, columns: predicted, both in ``CLASSES`` order).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from payer_scoring.rules import CLASSES

PROBABILITY_FLOOR = 1e-6  # probabilities are clipped to this before log-loss


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean of -ln p[true class] (columns in ``CLASSES`` order; sklearn's log_loss would sort them)."""
    if not len(y):
        return 0.0
    index = {c: j for j, c in enumerate(CLASSES)}
    picked = p[np.arange(len(y)), [index[c] for c in y]]
    return float(-np.log(picked).mean())


def classification_metrics(
    y_true: pd.Series | np.ndarray, proba: np.ndarray | pd.DataFrame, y_pred: pd.Series | np.ndarray | None = None
) -> dict:
    """Metrics of class probabilities ``proba`` (n x 4, ``CLASSES`` order) against true class names.

    ``y_pred``: the published class per row (a decision rule's); None: the argmax of ``proba``.
    """
    y = np.asarray(y_true, dtype=object)
    p = np.clip(np.asarray(proba, dtype=float), PROBABILITY_FLOOR, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    labels = list(CLASSES)
    if y_pred is None:
        y_pred = np.asarray(labels, dtype=object)[p.argmax(axis=1)]
    else:
        y_pred = np.asarray(y_pred, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class absent from the holdout
        recalls = recall_score(y, y_pred, labels=labels, average=None, zero_division=0)
        return {
            "n": int(len(y)),
            # macro over the classes that occur (in truth or prediction), as sklearn does
            # by default: a class absent from both would add a meaningless 0
            "macro_f1": float(f1_score(y, y_pred, labels=[c for c in labels if c in set(y) | set(y_pred)], average="macro", zero_division=0)) if len(y) else 0.0,
            "balanced_accuracy": float(balanced_accuracy_score(y, y_pred)) if len(y) else 0.0,
            "accuracy": float(np.mean(y == y_pred)) if len(y) else 0.0,
            "log_loss": _log_loss(y, p),
            "recall": {c: float(r) for c, r in zip(labels, recalls)},
            "confusion_matrix": confusion_matrix(y, y_pred, labels=labels).tolist(),
        }


def baseline_statistics(observed: pd.Series, labels: pd.Series) -> dict:
    """Training-set statistics the baselines need (stored in the model metadata).

    Returns ``persistence_accuracy`` (share of rows whose label equals the
    observed category), ``class_prior`` (label frequencies), ``majority_class``
    and ``transition`` (P(label | observed), add-one smoothed), all over ``CLASSES``.
    """
    prior = labels.value_counts(normalize=True).reindex(list(CLASSES), fill_value=0.0)
    counts = pd.crosstab(observed, labels).reindex(index=list(CLASSES), columns=list(CLASSES), fill_value=0) + 1
    transition = counts.div(counts.sum(axis=1), axis=0)
    return {
        "persistence_accuracy": float((observed.to_numpy() == labels.to_numpy()).mean()) if len(labels) else 0.25,
        "class_prior": {c: float(v) for c, v in prior.items()},
        "majority_class": str(prior.idxmax()),
        "transition": {o: {c: float(transition.loc[o, c]) for c in CLASSES} for o in CLASSES},
    }


def persistence_proba(observed: pd.Series, stats: dict) -> np.ndarray:
    """Smoothed one-hot probabilities of the persistence baseline (module docstring)."""
    a = min(max(float(stats["persistence_accuracy"]), 0.25), 0.999)
    index = {c: j for j, c in enumerate(CLASSES)}
    p = np.full((len(observed), len(CLASSES)), (1 - a) / (len(CLASSES) - 1))
    p[np.arange(len(observed)), [index[o] for o in observed]] = a
    return p


def transition_proba(observed: pd.Series, stats: dict) -> np.ndarray:
    """P(label | observed category) rows from the training transition matrix."""
    table = stats["transition"]
    return np.array([[table[o][c] for c in CLASSES] for o in observed], dtype=float).reshape(-1, len(CLASSES))


def majority_proba(n: int, stats: dict) -> np.ndarray:
    """Training label frequencies for every row (argmax: the majority class)."""
    prior = np.array([stats["class_prior"][c] for c in CLASSES], dtype=float)
    return np.tile(prior, (n, 1))


def compare_on_holdout(
    y_true: pd.Series, model_proba: np.ndarray, observed: pd.Series, stats: dict, model_categories=None
) -> dict:
    """Metrics of the model and of the baselines on the same rows, plus the model's margins.

    ``model_categories``: the model's published class per row (its decision
    rule); None: the argmax of ``model_proba``.

    ``margin`` holds macro_f1 (model minus persistence, > 0 is better) and
    log_loss (persistence minus model, > 0 is better).
    """
    report = {
        "model": classification_metrics(y_true, model_proba, model_categories),
        "persistence": classification_metrics(y_true, persistence_proba(observed, stats)),
        "persistence_transition": classification_metrics(y_true, transition_proba(observed, stats)),
        "majority": classification_metrics(y_true, majority_proba(len(y_true), stats)),
    }
    report["margin_vs_persistence"] = {
        "macro_f1": report["model"]["macro_f1"] - report["persistence"]["macro_f1"],
        "log_loss": report["persistence"]["log_loss"] - report["model"]["log_loss"],
    }
    report["beats_persistence"] = bool(
        report["margin_vs_persistence"]["macro_f1"] > 0 and report["margin_vs_persistence"]["log_loss"] > 0
    )
    return report
