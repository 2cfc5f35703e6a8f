"""The risk model: a calibrated, monotone ordinal chain over the rules' own late-share thresholds.

What it predicts.  For a customer at T, the late share of the bills that
mature in (T, T + H] (the label of ``sql/performance_labels.sql``) is above
each of the rules' thresholds t1 = good_max, t2 = doubtful_max,
t3 = forgetful_max with probabilities

    q1 = P(share > t1)  >=  q2 = P(share > t2)  >=  q3 = P(share > t3)

(the "cumulative" probabilities of the ordered classes good < doubtful <
forgetful < bad).  Class probabilities follow by differences:
p_good = 1 - q1, p_doubtful = q1 - q2, p_forgetful = q2 - q3, p_bad = q3,
non-negative because q is made non-increasing (below).

Why a chain of binary models and not one multiclass model: scikit-learn
refuses ``monotonic_cst`` for multiclass gradient boosting, and one binary
model per threshold is the classic ordinal decomposition (Frank & Hall 2001)
that keeps the order of the classes.  Each link is a
``HistGradientBoostingClassifier`` with ``monotonic_cst`` (see
:data:`MONOTONE`), unweighted (class weights distort probabilities; the rare
classes are handled by the decision rule in :mod:`models.risk_decision`).

Monotone by construction, end to end:

1. each link's boosted score is non-decreasing in every +1 feature and
   non-increasing in every -1 feature (scikit-learn's constraint);
2. each link is calibrated with an increasing map (isotonic regression or a
   Platt sigmoid with a positive slope);
3. q2 := min(q2, q1), q3 := min(q3, q2): a minimum of non-decreasing
   functions is non-decreasing, and it enforces q1 >= q2 >= q3.

So more lateness never lowers any q (in particular the risk score), and the
threshold decision rule on q never moves the category towards ``good``.

Calibration.  The training snapshots are split by date: the latest
``calibration_share`` of them (at least one) form the calibration fold; the
links are fitted on the earlier ones only.  The calibration fold precedes the
holdout (training ends one horizon before it) and was not used to fit.  The
method per link is chosen on the calibration fold itself by 2-fold
cross-fitting (customers split in two halves, each half calibrated on the
other): isotonic when its out-of-fold log-loss is lower than Platt's, else
Platt; the chosen method is then fitted on the whole fold.  The out-of-fold
calibrated probabilities are kept (``validation``) so the decision rule is
tuned on probabilities the calibrator did not see.

Refit.  After calibration each link is refitted on the fit and calibration
snapshots together (trees: the early-stopped number of iterations) and keeps
the calibration map learnt on the fold.  Why: the calibration fold holds the
most recent snapshots, and recency matters on drifting books: on 100,000
generated customers the refit lowered the holdout log-loss from 0.853 to
0.836 and the risk score's ECE from 0.027 to 0.019 (AUC 0.791 -> 0.798).
The map was learnt on the model before the refit, so a refitted model
could be a little sharper than its map assumes; the holdout ECE is the check.

The logistic challenger (``kind="logistic"``) is the same chain with each
link a logistic regression on signed-log, standardised features whose
coefficients are bounded to the constraint's sign (L-BFGS-B), so it is
monotone by construction too.

Plain Python: pandas frames in, no database, no Prefect.  Frames hold the
columns of :data:`RISK_FEATURES` (features of ``sql/customer_features.sql``)
and, for fitting, ``label`` (good/doubtful/forgetful/bad), ``snapshot`` and
``customer_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from payer_scoring.rules import CLASSES, Rules

# Monotone constraint of every model input: +1 = more of it never lowers the
# risk, -1 = more of it never raises the risk, 0 = free.
#
# +1, the lateness features (each says "more lateness", all else equal):
#   n_late, n_unpaid_overdue, late_share, dpd_mean/max/p90_days,
#   paid_delay_mean_days (signed mean delay of paid bills: later payment is worse),
#   recent3_late_share, recent3_dpd_mean_days, late_share_90d,
#   late_share_prev90d (lateness 90-180 days ago is still lateness: with the
#   recent shares held fixed, more of it must not lower the risk),
#   overdue_brl (BRL of matured unpaid bills), n_protest_events (protest /
#   credit-bureau events), company_late_share (the late share of the
#   customer's company's whole book: the portfolio's base rate; constrained so
#   that a reason code "company late share high" means what it says).
# -1:
#   since_last_late_days: fewer days since the last late bill = more recent
#     lateness (never late: the tenure, the "good" end);
#   n_paid_early: bills paid before due; turning an early-paid bill into a
#     late one lowers it, so it must not be free to raise the risk.
# 0 (free): volume, tenure, amounts, open (not yet due) bills, payment-method
#   and channel mix, company size and flags: their direction is not a rule.
# late_share_trend (= late_share_90d - late_share_prev90d) is NOT an input:
#   its sign is ambiguous (it rises with recent lateness and falls with older
#   lateness), so any constraint on it would contradict one of the two shares,
#   and a free trend would let older lateness lower the risk.  The trees see
#   both shares and can form the difference themselves.
MONOTONE: dict[str, int] = {
    "n_bills": 0,
    "n_matured_bills": 0,
    "n_late": 1,
    "n_paid_early": -1,
    "n_unpaid_overdue": 1,
    "late_share": 1,
    "dpd_mean_days": 1,
    "dpd_max_days": 1,
    "dpd_p90_days": 1,
    "paid_delay_mean_days": 1,
    "recent3_late_share": 1,
    "recent3_dpd_mean_days": 1,
    "n_matured_90d": 0,
    "late_share_90d": 1,
    "late_share_prev90d": 1,
    "tenure_days": 0,
    "since_last_bill_days": 0,
    "since_last_payment_days": 0,
    "since_last_late_days": -1,
    "n_open": 0,
    "open_brl": 0,
    "overdue_brl": 1,
    "n_upcoming_open": 0,
    "n_upcoming_prepaid": 0,
    "n_bills_90d": 0,
    "mean_amount_brl": 0,
    "max_amount_brl": 0,
    "instalment_share": 0,
    "pix_share": 0,
    "boleto_share": 0,
    "card_share": 0,
    "by_mail_share": 0,
    "by_whatsapp_share": 0,
    "n_protest_events": 1,
    "company_late_share": 1,
    "company_n_customers": 0,
    "company_is_churn_risk": 0,
    "company_is_key_account": 0,
}
# Model inputs in a fixed order: the feature query's columns minus late_share_trend.
RISK_FEATURES: list[str] = list(MONOTONE)
EXCLUDED_FEATURES: tuple[str, ...] = ("late_share_trend",)

# Which threshold of the rules names each link (q1, q2, q3).
LINKS: tuple[str, ...] = ("good_max", "doubtful_max", "forgetful_max")
# Cumulative probabilities are kept inside [EPS, 1 - EPS]: an isotonic map can
# return exactly 0 or 1, and one such wrong certainty would dominate log-loss.
EPS = 1e-3


def link_targets(labels: pd.Series | np.ndarray) -> np.ndarray:
    """n x 3 int matrix: label above good_max / doubtful_max / forgetful_max (from the class names)."""
    index = {c: j for j, c in enumerate(CLASSES)}
    codes = np.array([index[c] for c in np.asarray(labels, dtype=object)], dtype=int).reshape(-1)
    return np.stack([codes >= 1, codes >= 2, codes >= 3], axis=1).astype(int)


def cumulative_to_classes(q: np.ndarray) -> np.ndarray:
    """Class probabilities (n x 4, ``CLASSES`` order) from cumulative q (n x 3, made non-increasing first)."""
    q = monotone_cumulative(q)
    return np.column_stack([1 - q[:, 0], q[:, 0] - q[:, 1], q[:, 1] - q[:, 2], q[:, 2]])


def monotone_cumulative(q: np.ndarray) -> np.ndarray:
    """q clipped to [EPS, 1 - EPS] and made non-increasing across links (running minimum)."""
    q = np.clip(np.asarray(q, dtype=float), EPS, 1 - EPS)
    return np.minimum.accumulate(q, axis=1)


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class BoundedLogistic:
    """Binary logistic regression whose coefficients have the signs of ``constraints`` (L-BFGS-B).

    Inputs are signed-log transformed and standardised (both increasing maps,
    so the sign of a coefficient is the direction in the raw feature).
    ``l2`` is the ridge penalty per row on the standardised coefficients.
    """

    constraints: np.ndarray
    l2: float = 1e-4
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None
    coef_: np.ndarray | None = None
    intercept_: float = 0.0
    classes_: np.ndarray = field(default_factory=lambda: np.array([0, 1]))

    def _design(self, x: np.ndarray) -> np.ndarray:
        return (_signed_log(x) - self.mean_) / self.scale_

    def fit(self, x: np.ndarray, y: np.ndarray) -> BoundedLogistic:
        z = _signed_log(np.asarray(x, dtype=float))
        self.mean_ = z.mean(axis=0)
        self.scale_ = z.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        z = (z - self.mean_) / self.scale_
        y = np.asarray(y, dtype=float)
        n, k = z.shape

        def loss(w):
            s = z @ w[:k] + w[k]
            # log(1 + e^s) - y s, stable
            value = np.logaddexp(0, s) - y * s
            grad_s = 1 / (1 + np.exp(-s)) - y
            g = np.empty(k + 1)
            g[:k] = z.T @ grad_s / n + 2 * self.l2 * w[:k]
            g[k] = grad_s.mean()
            return value.mean() + self.l2 * np.sum(w[:k] ** 2), g

        bounds = [(0, None) if c > 0 else (None, 0) if c < 0 else (None, None) for c in self.constraints] + [(None, None)]
        prior = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        w0 = np.zeros(k + 1)
        w0[k] = np.log(prior / (1 - prior))
        result = minimize(loss, w0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
        self.coef_, self.intercept_ = result.x[:k], float(result.x[k])
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self._design(np.asarray(x, dtype=float)) @ self.coef_ + self.intercept_

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-self.decision_function(x)))
        return np.column_stack([1 - p, p])


def _hgb(n_rows: int, constraints: np.ndarray, random_state: int) -> HistGradientBoostingClassifier:
    # Small trees (7 leaves) and early stopping, as the multiclass model of
    # models/pipeline.py; the leaf minimum shrinks on small books (a real file
    # of 100 customers).  Early stopping watches a held-out 10 % of CUSTOMERS
    # (passed as X_val by fit_risk_model): with scikit-learn's random row split
    # the same customer's other snapshots sit on both sides, the validation
    # loss keeps improving, and the fit ran to max_iter and overfitted (holdout
    # AUC of the first link 0.788 against 0.802 with the customer split, 20,000
    # generated customers).
    return HistGradientBoostingClassifier(
        learning_rate=0.1,
        max_iter=500,
        max_leaf_nodes=7,
        min_samples_leaf=int(min(200, max(20, n_rows // 200))),
        l2_regularization=1.0,
        monotonic_cst=constraints.tolist(),
        early_stopping=True,
        n_iter_no_change=20,
        random_state=random_state,
    )


def _customer_half(customer_ids, buckets: int) -> np.ndarray:
    """Bucket 0..buckets-1 of each row by a hash of its customer id (stable across runs)."""
    return (pd.util.hash_array(np.asarray(customer_ids, dtype=object)) % buckets).astype(int)


@dataclass
class _Platt:
    """Platt scaling: sigmoid(a * logit(p) + b) with a >= 0 (an increasing map), fitted by log-loss."""

    a: float = 1.0
    b: float = 0.0

    def fit(self, p: np.ndarray, y: np.ndarray) -> _Platt:
        s, y = _logit(p), np.asarray(y, dtype=float)

        def loss(w):
            t = w[0] * s + w[1]
            r = 1 / (1 + np.exp(-t)) - y
            return float(np.mean(np.logaddexp(0, t) - y * t)), np.array([np.mean(r * s), np.mean(r)])

        result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0, None), (None, None)])
        self.a, self.b = float(result.x[0]), float(result.x[1])
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(self.a * _logit(p) + self.b)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _calibrator(method: str):
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0) if method == "isotonic" else _Platt()


def _log_loss_binary(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _choose_calibration(raw: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[str, np.ndarray, dict]:
    """Pick isotonic or Platt by 2-fold cross-fitted log-loss on the calibration fold.

    Returns (method, out-of-fold calibrated probabilities of that method, {method: log-loss}).
    ``groups`` keeps a customer's snapshots in one half.
    """
    half = _customer_half(groups, 2).astype(bool)
    scores, oof = {}, {}
    for method in ("isotonic", "platt"):
        out = np.empty(len(y))
        for part in (half, ~half):
            if part.all() or not part.any() or len(np.unique(y[~part])) < 2:
                out[part] = y[~part].mean() if (~part).any() else y.mean()
                continue
            out[part] = _calibrator(method).fit(raw[~part], y[~part]).predict(raw[part])
        oof[method] = out
        scores[method] = _log_loss_binary(y, out)
    method = min(scores, key=scores.get)
    return method, oof[method], scores


@dataclass
class RiskModel:
    """Fitted chain: three (estimator, calibrator) links plus what was learnt about them.

    ``kind`` is ``hgb`` or ``logistic``; ``calibration`` the method per link;
    ``validation`` the out-of-fold calibrated cumulative probabilities on the
    calibration fold with its labels (for tuning the decision rule);
    ``reference`` the median feature values of good payers (reason codes).
    """

    kind: str
    features: list[str]
    estimators: list
    calibrators: list
    calibration: list[str]
    calibration_log_loss: list[dict]
    thresholds: tuple[float, float, float]
    fit_snapshots: list
    calibration_snapshots: list
    validation: pd.DataFrame | None = field(default=None, repr=False)
    reference: pd.Series | None = field(default=None, repr=False)
    n_fit: int = 0
    n_calibration: int = 0
    prior: np.ndarray | None = None
    prior_mix: float = 0.0
    prior_mix_log_loss: dict = field(default_factory=dict)

    def raw_scores(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated link probabilities (n x 3)."""
        x = _matrix(features, self.features)
        if not len(x):
            return np.zeros((0, 3))
        return np.column_stack([est.predict_proba(x)[:, 1] for est in self.estimators])

    def cumulative(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated, non-increasing q1 >= q2 >= q3 (n x 3) in [EPS, 1 - EPS]."""
        raw = self.raw_scores(features)
        if not len(raw):
            return raw
        q = np.column_stack([cal.predict(raw[:, j]) for j, cal in enumerate(self.calibrators)])
        q = monotone_cumulative(q)
        return q if self.prior is None else _mix(q, self.prior, self.prior_mix)

    def class_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities (columns ``CLASSES``, rows sum to 1, all >= 0), index of ``features``."""
        q = self.cumulative(features)
        p = cumulative_to_classes(q) if len(q) else np.zeros((0, len(CLASSES)))
        return pd.DataFrame(p, index=features.index, columns=list(CLASSES))

    def risk_score(self, features: pd.DataFrame, outcome: str) -> np.ndarray:
        """P(window late share > the rules' threshold named ``outcome``): one of :data:`LINKS`."""
        return self.cumulative(features)[:, LINKS.index(outcome)]


# Share of the training class frequencies mixed into the chain's probabilities,
# tuned on the calibration fold (multiclass log-loss).  Why: each link is
# calibrated on its own, so where two links' curves meet the middle class gets
# a probability of ~0 (q1 - q2 after the running minimum); one such customer
# who then turns out ``doubtful`` costs -ln(1e-6) = 13.8 nats of log-loss
# (13 of 994 holdout customers on 20,000 generated ones, log-loss 1.06).
# Mixing (1 - a) q + a * prior keeps every class at least a * its frequency;
# the prior is constant, so monotonicity and the ranking are unchanged.
PRIOR_MIX_GRID = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12)


def _mix(q: np.ndarray, prior: np.ndarray, mix: float) -> np.ndarray:
    return (1 - mix) * q + mix * np.asarray(prior, dtype=float)[None, :]


def _tune_prior_mix(q: np.ndarray, prior: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    from models.evaluation import PROBABILITY_FLOOR

    idx = np.array([CLASSES.index(c) for c in labels], dtype=int)
    scores = {}
    for mix in PRIOR_MIX_GRID:
        p = np.clip(cumulative_to_classes(_mix(q, prior, mix)), PROBABILITY_FLOOR, 1)
        scores[mix] = float(-np.log(p[np.arange(len(idx)), idx]).mean())
    best = min(scores, key=scores.get)
    return best, scores


def _matrix(features: pd.DataFrame, columns: list[str]) -> np.ndarray:
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"features lack the model's input column(s) {missing}")
    x = features[columns].to_numpy(dtype=float)
    if np.isnan(x).any():
        bad = [c for c in columns if features[c].isna().any()]
        raise ValueError(f"features hold NaN in {bad}")
    return x


def split_calibration(snapshots: pd.Series, calibration_share: float) -> tuple[list, list]:
    """(fit dates, calibration dates): the latest ``calibration_share`` of the distinct dates (>= 1) calibrate."""
    dates = sorted(pd.unique(snapshots))
    if len(dates) < 2:
        raise ValueError(f"need at least 2 training snapshots to fit and calibrate, got {len(dates)}")
    n_cal = min(len(dates) - 1, max(1, int(round(len(dates) * calibration_share))))
    return dates[:-n_cal], dates[-n_cal:]


def good_payer_reference(frame: pd.DataFrame, features: list[str]) -> pd.Series:
    """Median of each feature over rows observed ``good`` (not new) at their snapshot; all rows if none."""
    good = frame[frame["observed_category"] == "good"] if "observed_category" in frame else frame.iloc[0:0]
    if good.empty:
        good = frame
    return good[features].median()


# Segments: customers with a judged history (matured bills >= the rules'
# minimum) and ``new`` ones get chains of their own when each segment has at
# least SEGMENT_MIN_ROWS labelled rows (a thin-file / thick-file split, as in
# credit scorecards).  Why: ``new`` rows are ~3/4 of the labelled rows on
# generated data, and one chain fitted to both compromises the one that
# billing acts on (a linear link especially).  The segment depends on
# n_matured_bills only, which no lateness move changes, so monotonicity holds
# within and across segments.
SEGMENT_MIN_ROWS = 2_000


@dataclass
class SegmentedRiskModel:
    """Two :class:`RiskModel` chains, ``history`` (n_matured_bills >= min_matured_bills) and ``new``."""

    min_matured_bills: int
    history: RiskModel
    new: RiskModel

    @property
    def kind(self) -> str:
        return self.history.kind

    @property
    def features(self) -> list[str]:
        return self.history.features

    @property
    def reference(self) -> pd.Series:
        return self.history.reference

    @property
    def validation(self) -> pd.DataFrame:
        return pd.concat([self.history.validation, self.new.validation]).sort_index()

    @property
    def calibration(self) -> dict:
        return {"history": self.history.calibration, "new": self.new.calibration}

    @property
    def calibration_log_loss(self) -> dict:
        return {"history": self.history.calibration_log_loss, "new": self.new.calibration_log_loss}

    @property
    def calibration_snapshots(self) -> list:
        return self.history.calibration_snapshots

    @property
    def n_fit(self) -> int:
        return self.history.n_fit + self.new.n_fit

    @property
    def n_calibration(self) -> int:
        return self.history.n_calibration + self.new.n_calibration

    @property
    def prior_mix(self) -> dict:
        return {"history": self.history.prior_mix, "new": self.new.prior_mix}

    def _segment(self, features: pd.DataFrame) -> np.ndarray:
        return (features["n_matured_bills"].to_numpy(dtype=float) >= self.min_matured_bills)

    def cumulative(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated q1 >= q2 >= q3 (n x 3), each row from its segment's chain."""
        out = np.zeros((len(features), 3))
        hist = self._segment(features)
        if hist.any():
            out[hist] = self.history.cumulative(features[hist])
        if (~hist).any():
            out[~hist] = self.new.cumulative(features[~hist])
        return out

    def class_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        q = self.cumulative(features)
        p = cumulative_to_classes(q) if len(q) else np.zeros((0, len(CLASSES)))
        return pd.DataFrame(p, index=features.index, columns=list(CLASSES))

    def risk_score(self, features: pd.DataFrame, outcome: str) -> np.ndarray:
        return self.cumulative(features)[:, LINKS.index(outcome)]


def fit_risk_model(
    frame: pd.DataFrame,
    rules: Rules,
    *,
    kind: str = "hgb",
    calibration_share: float = 0.25,
    random_state: int = 0,
    segmented: bool | None = None,
    refit: bool = True,
) -> RiskModel | SegmentedRiskModel:
    """Fit the chain (:func:`fit_chain`); one per segment (:data:`SEGMENT_MIN_ROWS`) when ``segmented`` and both are big enough.

    ``segmented`` None: segments for the logistic chain only (a linear link
    cannot split on the history length; the trees split on n_matured_bills
    themselves, and on 100,000 generated customers segmenting them cost
    0.01 of log-loss).
    """
    if segmented is None:
        segmented = kind == "logistic"
    hist = (frame["n_matured_bills"] >= rules.min_matured_bills).to_numpy()
    if segmented and hist.sum() >= SEGMENT_MIN_ROWS and (~hist).sum() >= SEGMENT_MIN_ROWS:
        try:
            return SegmentedRiskModel(
                min_matured_bills=rules.min_matured_bills,
                history=fit_chain(frame[hist], rules, kind=kind, calibration_share=calibration_share, random_state=random_state, refit=refit),
                new=fit_chain(frame[~hist], rules, kind=kind, calibration_share=calibration_share, random_state=random_state, refit=refit),
            )
        except ValueError:
            pass  # a segment with a single outcome in a link: one chain for everyone
    return fit_chain(frame, rules, kind=kind, calibration_share=calibration_share, random_state=random_state, refit=refit)


def _refit(est, kind: str, x: np.ndarray, y: np.ndarray, constraints: np.ndarray, random_state: int):
    """The same link refitted on fit + calibration rows (HGB: the early-stopped number of iterations)."""
    if kind == "hgb":
        return _hgb(len(x), constraints, random_state).set_params(
            early_stopping=False, max_iter=int(est.n_iter_), min_samples_leaf=est.min_samples_leaf
        ).fit(x, y)
    return BoundedLogistic(constraints=constraints, l2=est.l2).fit(x, y)


def fit_chain(
    frame: pd.DataFrame,
    rules: Rules,
    *,
    kind: str = "hgb",
    calibration_share: float = 0.25,
    random_state: int = 0,
    refit: bool = True,
) -> RiskModel:
    """Fit and calibrate the ordinal chain on labelled training snapshots.

    ``frame``: one row per (snapshot, customer) with :data:`RISK_FEATURES`,
    ``label``, ``snapshot``, ``customer_id``, ``n_matured`` and ``observed_category``; every
    customer with a label, ``new`` ones included (so they get a risk score
    too).  ``kind``: ``hgb`` (default) or ``logistic``.  Raises ValueError
    with fewer than 2 snapshot dates, a missing column, or a link whose
    fitting rows hold a single outcome.
    """
    if kind not in ("hgb", "logistic"):
        raise ValueError(f"kind must be 'hgb' or 'logistic', got {kind!r}")
    fit_dates, cal_dates = split_calibration(frame["snapshot"], calibration_share)
    is_cal = frame["snapshot"].isin(cal_dates).to_numpy()
    fit_rows, cal_rows = frame[~is_cal], frame[is_cal]
    x_fit, x_cal = _matrix(fit_rows, RISK_FEATURES), _matrix(cal_rows, RISK_FEATURES)
    y_fit, y_cal = link_targets(fit_rows["label"]), link_targets(cal_rows["label"])
    constraints = np.array([MONOTONE[c] for c in RISK_FEATURES])
    estimators, calibrators, methods, scores, oof = [], [], [], [], []
    for j, name in enumerate(LINKS):
        if len(np.unique(y_fit[:, j])) < 2:
            raise ValueError(f"link {name}: the fitting snapshots hold a single outcome; cannot fit")
        if kind == "hgb":
            stop = _customer_half(fit_rows["customer_id"], 10) == 0
            if stop.all() or not stop.any() or len(np.unique(y_fit[stop, j])) < 2:
                stop = np.zeros(len(x_fit), dtype=bool)
                est = _hgb(len(x_fit), constraints, random_state).set_params(early_stopping=False, max_iter=100)
                est.fit(x_fit, y_fit[:, j])
            else:
                est = _hgb(int((~stop).sum()), constraints, random_state)
                est.fit(x_fit[~stop], y_fit[~stop, j], X_val=x_fit[stop], y_val=y_fit[stop, j])
        else:
            est = BoundedLogistic(constraints=constraints).fit(x_fit, y_fit[:, j])
        raw_cal = est.predict_proba(x_cal)[:, 1]
        if len(np.unique(y_cal[:, j])) < 2:
            # A calibration fold without a single positive (tiny books): keep the raw score.
            method, out, score = "none", raw_cal, {}
            cal = _Identity()
        else:
            method, out, score = _choose_calibration(raw_cal, y_cal[:, j], cal_rows["customer_id"].to_numpy())
            cal = _calibrator(method).fit(raw_cal, y_cal[:, j])
        if refit and len(np.unique(y_cal[:, j])) == 2:
            est = _refit(est, kind, np.vstack([x_fit, x_cal]), np.concatenate([y_fit[:, j], y_cal[:, j]]), constraints, random_state)
        estimators.append(est)
        calibrators.append(cal)
        methods.append(method)
        scores.append(score)
        oof.append(out)
    oof_q = monotone_cumulative(np.column_stack(oof))
    prior = link_targets(frame["label"]).mean(axis=0)
    categorised = (cal_rows["n_matured"] >= rules.min_matured_bills).to_numpy()
    tune_rows = categorised if categorised.sum() >= 200 else np.ones(len(cal_rows), dtype=bool)
    mix, mix_scores = _tune_prior_mix(oof_q[tune_rows], prior, cal_rows["label"].to_numpy()[tune_rows])
    validation = pd.DataFrame(_mix(oof_q, prior, mix), columns=["q1", "q2", "q3"], index=cal_rows.index)
    validation["label"] = cal_rows["label"].to_numpy()
    validation["n_matured"] = cal_rows["n_matured"].to_numpy()
    validation["observed_category"] = cal_rows["observed_category"].to_numpy()
    return RiskModel(
        kind=kind,
        features=list(RISK_FEATURES),
        estimators=estimators,
        calibrators=calibrators,
        calibration=methods,
        calibration_log_loss=scores,
        thresholds=rules.thresholds,
        fit_snapshots=list(fit_dates),
        calibration_snapshots=list(cal_dates),
        validation=validation,
        reference=good_payer_reference(frame[frame["n_matured"] >= rules.min_matured_bills], RISK_FEATURES)
        if (frame["n_matured"] >= rules.min_matured_bills).any() else frame[RISK_FEATURES].median(),
        n_fit=int(len(fit_rows)),
        n_calibration=int(len(cal_rows)),
        prior=prior,
        prior_mix=mix,
        prior_mix_log_loss=mix_scores,
    )


class _Identity:
    def predict(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=float)


def logistic_baseline(frame: pd.DataFrame) -> LogisticRegression:
    """Multinomial logistic regression on signed-log, standardised features (a log-loss baseline).

    Returns a fitted object with ``predict_class_proba(features)`` giving an
    n x 4 array in ``CLASSES`` order.
    """
    return _MultinomialBaseline().fit(frame)


@dataclass
class _MultinomialBaseline:
    columns: list[str] = field(default_factory=lambda: list(RISK_FEATURES) + list(EXCLUDED_FEATURES))

    def fit(self, frame: pd.DataFrame) -> _MultinomialBaseline:
        z = _signed_log(frame[self.columns].to_numpy(dtype=float))
        self.mean_, self.scale_ = z.mean(axis=0), z.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        self.model_ = LogisticRegression(max_iter=2000, C=1.0).fit((z - self.mean_) / self.scale_, frame["label"].to_numpy())
        return self

    def predict_class_proba(self, features: pd.DataFrame) -> np.ndarray:
        z = (_signed_log(features[self.columns].to_numpy(dtype=float)) - self.mean_) / self.scale_
        raw = self.model_.predict_proba(z)
        out = np.zeros((len(features), len(CLASSES)))
        for j, c in enumerate(self.model_.classes_):
            out[:, CLASSES.index(c)] = raw[:, j]
        return out


__all__ = [
    "MONOTONE", "RISK_FEATURES", "EXCLUDED_FEATURES", "LINKS", "RiskModel", "SegmentedRiskModel",
    "fit_risk_model", "fit_chain",
    "link_targets", "cumulative_to_classes", "monotone_cumulative", "logistic_baseline",
    "BoundedLogistic",
]
