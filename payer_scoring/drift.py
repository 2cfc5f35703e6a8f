"""Data drift, performance decay, retrain triggers and the promotion rule.

Plain functions over numpy arrays and DataFrames (no Prefect, no database) so
tests call them directly; the weekly flow (``flows/weekly_retrain.py``) wires
them.

Population Stability Index (PSI)
    ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over bins, where ``e_i`` is the
    share of the *reference* sample (the drift population at the as-of date the
    champion was trained at, stored with the model) in bin
    ``i`` and ``a_i`` the share of the current population.  Bins are the
    reference's quantiles (10 by default), so each bin holds about a tenth of
    the reference.  Details that keep it finite and meaningful:

    * bins are right-closed intervals between the *distinct* interior
      quantiles ``(-inf, c_1], (c_1, c_2], ..., (c_k, inf)``; a feature with
      many ties (e.g. a share that is 0 for 60 % of customers) simply gets
      fewer bins, and a constant feature gets two, ``(-inf, v]`` and
      ``(v, inf)``, so any move away from the constant shows up;
    * missing values (NULL features such as "days since last payment" of a
      customer who never paid) form a bin of their own;
    * an empty bin's share is replaced by ``epsilon`` (1e-4 = 0.01 %) before
      the logarithm; otherwise a single empty bin makes PSI infinite.

    Thresholds 0.10 ("moderate") and 0.25 ("major") are the industry
    convention of credit-scoring practice (Siddiqi, *Credit Risk Scorecards*,
    Wiley 2006, ch. 8: < 0.10 no significant change, 0.10-0.25 some change
    worth investigating, > 0.25 a significant shift).

Two-sample Kolmogorov-Smirnov
    ``scipy.stats.ks_2samp`` on the non-missing values.  PSI measures how big
    a shift is, KS whether it is real: with a few hundred current customers an
    unchanged feature scores PSI 0.05-0.15 by sampling noise alone (the
    expected PSI of two samples of one distribution is about
    ``(bins - 1) * (1/n_reference + 1/n_current)``), while with tens of
    thousands KS finds shifts far too small to matter.  So a feature counts as
    **drifted** only when both hold: PSI >= 0.10 and KS p-value < ``ks_alpha``
    (0.01 by default; a feature without a KS test, e.g. categorical, needs only
    the PSI).  ``level`` is the PSI's alone, ``drifted`` the combined flag.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from payer_scoring.rules import CLASSES

PSI_MODERATE = 0.10
PSI_MAJOR = 0.25
DEFAULT_BINS = 10
KS_ALPHA = 0.01
EPSILON = 1e-4
#: Categories the model predicts (``new`` is assigned by rule, never predicted).
PREDICTED_CATEGORIES = CLASSES


# ---------------------------------------------------------------- PSI and KS
def psi_from_shares(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """PSI of two histograms given as shares per bin (each summing to 1).

    Shares below ``epsilon`` are raised to ``epsilon`` (empty bins).  Raises
    ``ValueError`` when the two have different lengths or are empty.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.size == 0:
        raise ValueError(f"PSI needs two histograms of the same non-zero length, got {e.size} and {a.size} bins")
    e = np.maximum(e, epsilon)
    a = np.maximum(a, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_cut_points(reference: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Distinct interior quantiles of ``reference`` (NaN ignored) that split it into up to ``bins`` bins.

    Returns an increasing array of at most ``bins - 1`` cut points; a constant
    reference gives one cut point (the constant), an empty one none.
    """
    values = np.asarray(reference, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.array([], dtype=float)
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], method="linear")
    cuts = np.unique(qs)
    return cuts


def _numeric_shares(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins ``(-inf, c_1], ..., (c_k, inf)`` plus a last bin for NaN."""
    values = np.asarray(values, dtype=float)
    missing = np.isnan(values)
    idx = np.searchsorted(cuts, values[~missing], side="left")  # x == c_i goes to (c_{i-1}, c_i]
    counts = np.bincount(idx, minlength=cuts.size + 1).astype(float)
    counts = np.append(counts, missing.sum())
    total = counts.sum()
    return counts / total if total else counts


def psi(reference: Iterable[float], current: Iterable[float], bins: int = DEFAULT_BINS, epsilon: float = EPSILON) -> float:
    """PSI of a numeric feature, bins from the reference's quantiles (see module docstring).

    Returns NaN when either sample is empty.
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if ref.size == 0 or cur.size == 0:
        return math.nan
    cuts = quantile_cut_points(ref, bins)
    return psi_from_shares(_numeric_shares(ref, cuts), _numeric_shares(cur, cuts), epsilon)


def categorical_psi(reference: Iterable[object], current: Iterable[object], epsilon: float = EPSILON) -> float:
    """PSI over category shares; one bin per category seen in either sample (missing is a category)."""
    ref = pd.Series(list(reference), dtype=object).fillna("<missing>")
    cur = pd.Series(list(current), dtype=object).fillna("<missing>")
    if ref.empty or cur.empty:
        return math.nan
    cats = sorted(set(ref) | set(cur), key=str)
    e = ref.value_counts(normalize=True).reindex(cats, fill_value=0.0)
    a = cur.value_counts(normalize=True).reindex(cats, fill_value=0.0)
    return psi_from_shares(e.to_numpy(), a.to_numpy(), epsilon)


def ks_test(reference: Iterable[float], current: Iterable[float]) -> tuple[float, float]:
    """Two-sample KS statistic and p-value on the non-missing values; (NaN, NaN) if either is empty."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref = ref[~np.isnan(ref)]
    cur = cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        # scipy falls back from the exact to the asymptotic p-value on tied or
        # large samples and says so; the fallback is the documented behaviour.
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful")
        result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def psi_level(value: float, moderate: float = PSI_MODERATE, major: float = PSI_MAJOR) -> str:
    """``stable`` below ``moderate``, ``moderate`` below ``major``, else ``major`` (NaN: ``unknown``)."""
    if value is None or math.isnan(value):
        return "unknown"
    if value >= major:
        return "major"
    if value >= moderate:
        return "moderate"
    return "stable"


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    bins: int = DEFAULT_BINS,
    moderate: float = PSI_MODERATE,
    major: float = PSI_MAJOR,
    ks_alpha: float = KS_ALPHA,
) -> pd.DataFrame:
    """One row per feature: ``feature, psi, ks_statistic, ks_pvalue, level, drifted, reference_mean, current_mean``.

    ``level`` is the PSI level; ``drifted`` is PSI >= ``moderate`` and a KS
    p-value below ``ks_alpha`` (or no KS test) -- see the module docstring.

    Numeric columns get quantile-bin PSI and KS; other columns get category
    PSI and NaN KS.  Raises ``ValueError`` naming the first feature missing
    from either frame.
    """
    rows = []
    for name in features:
        for label, frame in (("reference sample", reference), ("current features", current)):
            if name not in frame.columns:
                raise ValueError(f"{label}: column {name!r} missing (expected every model feature)")
        ref, cur = reference[name], current[name]
        if pd.api.types.is_bool_dtype(ref) or pd.api.types.is_numeric_dtype(ref):
            ref_f = pd.to_numeric(ref, errors="coerce").astype(float).to_numpy()
            cur_f = pd.to_numeric(cur, errors="coerce").astype(float).to_numpy()
            value = psi(ref_f, cur_f, bins)
            ks_stat, ks_p = ks_test(ref_f, cur_f)
            ref_mean = float(np.nanmean(ref_f)) if np.isfinite(ref_f).any() else math.nan
            cur_mean = float(np.nanmean(cur_f)) if np.isfinite(cur_f).any() else math.nan
        else:
            value = categorical_psi(ref, cur)
            ks_stat = ks_p = ref_mean = cur_mean = math.nan
        rows.append(
            {
                "feature": name,
                "psi": value,
                "ks_statistic": ks_stat,
                "ks_pvalue": ks_p,
                "level": psi_level(value, moderate, major),
                "drifted": bool(
                    not math.isnan(value) and value >= moderate and (math.isnan(ks_p) or ks_p < ks_alpha)
                ),
                "reference_mean": ref_mean,
                "current_mean": cur_mean,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["feature", "psi", "ks_statistic", "ks_pvalue", "level", "drifted", "reference_mean", "current_mean"],
    )


def category_shares(categories: Iterable[str], order: Sequence[str] = PREDICTED_CATEGORIES) -> dict[str, float]:
    """Share (0-1) of each category in ``order``; categories outside ``order`` are ignored."""
    s = pd.Series(list(categories), dtype=object)
    s = s[s.isin(order)]
    if s.empty:
        return {c: 0.0 for c in order}
    counts = s.value_counts(normalize=True)
    return {c: float(counts.get(c, 0.0)) for c in order}


def category_share_shift(
    reference: Mapping[str, float], current: Mapping[str, float], order: Sequence[str] = PREDICTED_CATEGORIES
) -> dict[str, object]:
    """Shift of predicted-category shares: ``{"reference": {...}, "current": {...}, "change": {...}, "psi": x}``.

    ``change`` is current minus reference share per category (points of 0-1).
    """
    e = [reference.get(c, 0.0) for c in order]
    a = [current.get(c, 0.0) for c in order]
    return {
        "reference": {c: float(v) for c, v in zip(order, e)},
        "current": {c: float(v) for c, v in zip(order, a)},
        "change": {c: float(y - x) for c, x, y in zip(order, e, a)},
        "psi": psi_from_shares(e, a) if sum(e) > 0 and sum(a) > 0 else math.nan,
    }


# ---------------------------------------------------------------- performance decay
def macro_f1(true: Iterable[str], predicted: Iterable[str], labels: Sequence[str] = PREDICTED_CATEGORIES) -> float:
    """Macro-F1 (0-1) over the classes of ``labels`` that occur among the true or predicted values; NaN if empty."""
    from sklearn.metrics import f1_score

    y_true = list(true)
    y_pred = list(predicted)
    if not y_true:
        return math.nan
    present = [c for c in labels if c in set(y_true) | set(y_pred)]
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


# ---------------------------------------------------------------- triggers
@dataclass(frozen=True)
class RetrainPolicy:
    """Trigger thresholds (from settings; see ``payer_scoring/settings.py``)."""

    drifted_share_max: float = 0.30
    key_features: tuple[str, ...] = ()
    key_feature_psi: float = PSI_MAJOR
    f1_drop: float = 0.05
    #: Risk score (issue 11): realized AUC this much below the holdout's, or Brier this much above, retrains.
    auc_drop: float = 0.03
    brier_increase: float = 0.02
    max_champion_age_days: int = 90
    psi_moderate: float = PSI_MODERATE
    #: Reported but not counted by the drift triggers: features that grow with
    #: calendar time (customer age, size of the book), not with behaviour.
    exempt_features: tuple[str, ...] = ()


@dataclass
class PerformanceDecay:
    """Realized vs expected quality of predictions whose performance window has matured."""

    predictions_as_of: str | None = None
    model_version: str | None = None
    n: int = 0
    realized_macro_f1: float | None = None
    expected_macro_f1: float | None = None
    note: str = ""
    # the published risk score's realized AUC and Brier vs the model's holdout figures
    realized_risk_auc: float | None = None
    expected_risk_auc: float | None = None
    realized_risk_brier: float | None = None
    expected_risk_brier: float | None = None

    @property
    def drop(self) -> float | None:
        if self.realized_macro_f1 is None or self.expected_macro_f1 is None:
            return None
        return self.expected_macro_f1 - self.realized_macro_f1

    @property
    def auc_drop(self) -> float | None:
        if self.realized_risk_auc is None or self.expected_risk_auc is None:
            return None
        return self.expected_risk_auc - self.realized_risk_auc

    @property
    def brier_increase(self) -> float | None:
        if self.realized_risk_brier is None or self.expected_risk_brier is None:
            return None
        return self.realized_risk_brier - self.expected_risk_brier

    def to_dict(self) -> dict:
        d = asdict(self)
        d["drop"] = self.drop
        d["auc_drop"] = self.auc_drop
        d["brier_increase"] = self.brier_increase
        return d


@dataclass
class RetrainDecision:
    """Whether to train a challenger, which triggers fired (codes) and why (one sentence each)."""

    retrain: bool
    triggers: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def decide_retrain(
    *,
    has_champion: bool,
    force: bool,
    drift: pd.DataFrame | None,
    decay: PerformanceDecay | None,
    champion_age_days: int | None,
    policy: RetrainPolicy,
) -> RetrainDecision:
    """Apply the triggers in a fixed order; every trigger that fires is listed.

    Triggers (codes): ``no_champion``; ``force``; ``drifted_share`` (share of
    drifted features -- PSI >= ``policy.psi_moderate`` and KS significant, the
    ``drifted`` column of :func:`feature_drift` -- above
    ``policy.drifted_share_max``); ``key_feature_psi`` (a drifted key feature
    with PSI >= ``policy.key_feature_psi``); ``performance_decay`` (realized macro-F1
    lower than the model's holdout macro-F1 by >= ``policy.f1_drop``);
    ``champion_age`` (champion trained more than
    ``policy.max_champion_age_days`` days before the as-of date);
    ``risk_score_decay`` (the published risk score's realized AUC below the
    model's holdout AUC by >= ``policy.auc_drop``, or its Brier above the
    holdout's by >= ``policy.brier_increase``).  Features
    in ``policy.exempt_features`` are left out of the drift triggers.  With no
    trigger, ``reasons`` says which checks passed and by how much.
    """
    triggers: list[str] = []
    reasons: list[str] = []
    calm: list[str] = []
    if not has_champion:
        triggers.append("no_champion")
        reasons.append("no champion model: the first model trained becomes champion")
    if force:
        triggers.append("force")
        reasons.append("retrain forced by the caller (--force)")
    if drift is not None and not drift.empty:
        scored = drift[~drift["feature"].isin(policy.exempt_features)].dropna(subset=["psi"])
        significant = scored["drifted"].astype(bool) if "drifted" in scored else pd.Series(True, index=scored.index)
        drifted = scored[(scored["psi"] >= policy.psi_moderate) & significant]
        share = len(drifted) / len(scored) if len(scored) else 0.0
        if share > policy.drifted_share_max:
            triggers.append("drifted_share")
            reasons.append(
                f"{len(drifted)} of {len(scored)} features ({share:.0%}) drifted (PSI >= {policy.psi_moderate:.2f}, "
                f"KS significant), above the limit {policy.drifted_share_max:.0%}: " + ", ".join(drifted["feature"])
            )
        else:
            calm.append(
                f"{len(drifted)} of {len(scored)} features ({share:.0%}) drifted (PSI >= {policy.psi_moderate:.2f}, "
                f"KS significant; limit {policy.drifted_share_max:.0%})"
            )
        key = scored[
            scored["feature"].isin(policy.key_features) & (scored["psi"] >= policy.key_feature_psi - 1e-12) & significant
        ]
        if not key.empty:
            triggers.append("key_feature_psi")
            reasons.append(
                f"key feature(s) drifted with PSI >= {policy.key_feature_psi:.2f}: "
                + ", ".join(f"{r.feature} ({r.psi:.3f})" for r in key.itertuples())
            )
        elif policy.key_features:
            worst = scored[scored["feature"].isin(policy.key_features)]
            if not worst.empty:
                top = worst.loc[worst["psi"].idxmax()]
                calm.append(f"largest key-feature PSI {top['psi']:.3f} ({top['feature']}) < {policy.key_feature_psi:.2f}")
    if decay is not None and decay.drop is not None:
        if decay.drop >= policy.f1_drop - 1e-9:  # 0.60 - 0.55 is 0.04999... in floating point
            triggers.append("performance_decay")
            reasons.append(
                f"realized macro-F1 {decay.realized_macro_f1:.3f} on {decay.n} matured predictions of "
                f"{decay.predictions_as_of} is {decay.drop:.3f} below the holdout macro-F1 "
                f"{decay.expected_macro_f1:.3f} (limit {policy.f1_drop:.2f})"
            )
        else:
            calm.append(
                f"realized macro-F1 {decay.realized_macro_f1:.3f} vs holdout {decay.expected_macro_f1:.3f} "
                f"(drop {decay.drop:.3f} < {policy.f1_drop:.2f})"
            )
    elif decay is not None and decay.note:
        calm.append(f"performance decay not checked: {decay.note}")
    if decay is not None and (decay.auc_drop is not None or decay.brier_increase is not None):
        auc_bad = decay.auc_drop is not None and decay.auc_drop >= policy.auc_drop - 1e-9
        brier_bad = decay.brier_increase is not None and decay.brier_increase >= policy.brier_increase - 1e-9
        figures = (
            f"risk-score AUC {decay.realized_risk_auc:.3f} vs holdout {decay.expected_risk_auc:.3f} "
            f"(limit: {policy.auc_drop:.2f} lower), Brier {decay.realized_risk_brier:.3f} vs holdout "
            f"{decay.expected_risk_brier:.3f} (limit: {policy.brier_increase:.2f} higher) on {decay.n} matured "
            f"predictions of {decay.predictions_as_of}"
        )
        if auc_bad or brier_bad:
            triggers.append("risk_score_decay")
            reasons.append("risk score decayed: " + figures)
        else:
            calm.append(figures)
    if champion_age_days is not None:
        if champion_age_days > policy.max_champion_age_days:
            triggers.append("champion_age")
            reasons.append(
                f"champion trained {champion_age_days} days before the as-of date (limit {policy.max_champion_age_days})"
            )
        else:
            calm.append(f"champion age {champion_age_days} days (limit {policy.max_champion_age_days})")
    if triggers:
        return RetrainDecision(True, triggers, reasons)
    return RetrainDecision(False, [], ["no retrain trigger fired: " + "; ".join(calm) if calm else "no retrain trigger fired"])


# ---------------------------------------------------------------- promotion
@dataclass(frozen=True)
class PromotionRule:
    """Promote the challenger only when it is not worse than the champion by more than these margins."""

    max_f1_drop: float = 0.01
    max_log_loss_increase: float = 0.02
    #: Risk score (issue 11): challenger's AUC at most this much lower, Brier at most this much higher.
    max_auc_drop: float = 0.005
    max_brier_increase: float = 0.002


def promotion_decision(
    champion: Mapping[str, float] | None, challenger: Mapping[str, float], rule: PromotionRule
) -> tuple[bool, str]:
    """``(promote, reason)`` from metrics on the same holdout (keys ``macro_f1``, ``log_loss``; ``risk_auc``, ``risk_brier``).

    Rule: promote when ``challenger.macro_f1 >= champion.macro_f1 - max_f1_drop``
    and ``challenger.log_loss <= champion.log_loss + max_log_loss_increase``
    and, when both carry risk-score figures (issue 11: what billing acts on),
    ``challenger.risk_auc >= champion.risk_auc - max_auc_drop`` and
    ``challenger.risk_brier <= champion.risk_brier + max_brier_increase``;
    with no champion the challenger is promoted.  Ties go to the challenger: it
    was trained on the more recent data.
    """
    if champion is None:
        return True, "no champion: the first model becomes champion"
    f1_gap = champion["macro_f1"] - challenger["macro_f1"]
    ll_gap = challenger["log_loss"] - champion["log_loss"]
    f1_ok = f1_gap <= rule.max_f1_drop + 1e-12
    ll_ok = ll_gap <= rule.max_log_loss_increase + 1e-12
    figures = (
        f"macro-F1 challenger {challenger['macro_f1']:.4f} vs champion {champion['macro_f1']:.4f} "
        f"(allowed drop {rule.max_f1_drop:.3f}); log-loss challenger {challenger['log_loss']:.4f} vs champion "
        f"{champion['log_loss']:.4f} (allowed increase {rule.max_log_loss_increase:.3f})"
    )
    checks = [("macro-F1", f1_ok), ("log-loss", ll_ok)]
    if all(_present(m, k) for m in (champion, challenger) for k in ("risk_auc", "risk_brier")):
        auc_ok = champion["risk_auc"] - challenger["risk_auc"] <= rule.max_auc_drop + 1e-12
        brier_ok = challenger["risk_brier"] - champion["risk_brier"] <= rule.max_brier_increase + 1e-12
        checks += [("risk-score AUC", auc_ok), ("risk-score Brier", brier_ok)]
        figures += (
            f"; risk-score AUC challenger {challenger['risk_auc']:.4f} vs champion {champion['risk_auc']:.4f} "
            f"(allowed drop {rule.max_auc_drop:.3f}); Brier challenger {challenger['risk_brier']:.4f} vs champion "
            f"{champion['risk_brier']:.4f} (allowed increase {rule.max_brier_increase:.3f})"
        )
    if all(ok for _, ok in checks):
        return True, "challenger promoted: " + figures
    failed = [w for w, ok in checks if not ok]
    return False, f"challenger rejected ({' and '.join(failed)} worse beyond the margin): " + figures


def _present(metrics: Mapping[str, float], key: str) -> bool:
    value = metrics.get(key)
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def drift_population(features: pd.DataFrame, min_matured_bills: int, active_days: int) -> pd.DataFrame:
    """Rows of ``features`` (one per customer) that the drift check compares, on both sides.

    Customers with at least ``min_matured_bills`` matured bills (not ``new``)
    that are active: a bill issued in the last ``active_days`` days, or an open
    or prepaid bill falling due within the horizon.  Returns a filtered view of
    ``features`` (same columns); see :mod:`models.monitoring` for why.
    """
    active = (features["since_last_bill_days"] <= active_days) | (
        (features["n_upcoming_open"] + features["n_upcoming_prepaid"]) > 0
    )
    return features[(features["n_matured"] >= min_matured_bills) & active]
