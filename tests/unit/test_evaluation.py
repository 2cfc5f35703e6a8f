"""Holdout metrics and baselines, with values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.evaluation import baseline_statistics, classification_metrics, compare_on_holdout, persistence_proba


def test_log_loss_uses_the_classes_order_not_alphabetical():
    # columns good, doubtful, forgetful, bad; sklearn would read them as bad, doubtful, forgetful, good
    proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    m = classification_metrics(pd.Series(["good", "bad"]), proba)
    assert m["log_loss"] == pytest.approx(-math.log(0.7))
    assert m["macro_f1"] == 1.0 and m["recall"]["good"] == 1.0 and m["confusion_matrix"][0][0] == 1


def test_baselines_from_training_statistics():
    observed = pd.Series(["good", "good", "bad", "doubtful"])
    labels = pd.Series(["good", "bad", "bad", "good"])
    stats = baseline_statistics(observed, labels)
    assert stats["persistence_accuracy"] == 0.5 and stats["majority_class"] in ("good", "bad")
    assert stats["class_prior"] == {"good": 0.5, "doubtful": 0.0, "forgetful": 0.0, "bad": 0.5}
    # add-one smoothed P(label | observed = good): good 1+1, bad 1+1, others 1 -> /6
    assert stats["transition"]["good"]["good"] == pytest.approx(2 / 6)
    p = persistence_proba(pd.Series(["doubtful"]), stats)
    assert p.tolist() == [[0.5 / 3, 0.5, 0.5 / 3, 0.5 / 3]]
    report = compare_on_holdout(labels, np.tile([0.5, 0.0, 0.0, 0.5], (4, 1)), observed, stats)
    assert report["persistence"]["log_loss"] == pytest.approx(-(math.log(0.5) * 2 + math.log(0.5 / 3) * 2) / 4)
    assert set(report) >= {"model", "persistence", "majority", "persistence_transition", "margin_vs_persistence"}
