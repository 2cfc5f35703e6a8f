"""Synthetic bills in the platform's export layout, calibrated to EXPORT_PROFILE.md.

The generator writes what the real exports hold — `payments` (39 columns),
`companies` (29 columns) — plus the hidden truth that real data never has:
`synthetic_truth`, the behaviour type that drove each customer's payments over
time (evaluation only; no feature query may read it).

How the data comes about (all vectorised with numpy, customers in chunks):

* One company per 250 customers; company sizes are lognormal (a few large ones).
* Bills per customer: 1 + negative binomial (median 3, p25 2, p75 4) mixed with
  a 2 % Pareto tail capped at 1,000 bills.  A customer's bills form a regular
  series (monthly mostly; weekly to quarterly for some), grouped into plans:
  every bill of a plan is issued on the same day with due dates one period
  apart, so a plan's installments ``k/n`` fall due after the export date.
* Most customers are still active at the export date E (their last plan was
  issued in the last period before E); the others stopped earlier.  That, and
  plans spreading into the future, is where the profile's 30 % `pending` comes from.
* Each customer has a hidden behaviour type — punctual, doubtful, forgetful,
  bad, drop_out — that switches at random (``TYPE_SWITCH_PER_MONTH``); a
  drop-out stops paying from a date on.  The type at a bill's due date sets the
  chance that it is cancelled, never paid, or paid late, and the delay; a bit of
  signal also comes from the company's churn risk (late more often, delays
  x2.2), the amount, the payment method and the reminder channel.
* Statuses are those of an export snapshot taken at E: a bill paid before E is
  paid (``paid_at_dte < E``); unpaid and due before E is overdue (or one of the
  protest statuses); unpaid and due on/after E is pending; cancelled bills have
  no paid date.
* ``drift_at``: from that date on, ``DRIFT_CUSTOMER_SHARE`` of customers turn
  one step worse (punctual/doubtful -> forgetful, forgetful -> bad): a truth
  segment with cause 'drift' for customers already there, a worse first type
  for those arriving later; and ``DRIFT_PIX_SHARE`` of new bills move to pix.

Same config -> same data: every chunk draws from its own generator seeded by
``(seed, chunk index)``; the chunk size is part of the config.  Ids are sha256
digests of seeded strings, printed as 32 space-separated lower-case hex bytes
like the export.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- layouts
PAYMENT_COLUMNS: tuple[str, ...] = (
    "company_id", "company_name", "company_document", "company_trade_name",
    "customer_id", "customer_name", "customer_trade_name", "parent_type", "parent_id",
    "payment_number", "issue_date_dte", "original_due_date_dte", "due_date_dte", "paid_at_dte",
    "issue_at_tsmp", "original_due_date_tsmp", "due_date_tsmp", "paid_at_tsmp",
    "payment_method", "payment_status", "paid_amount", "billing_amount", "payment_amount",
    "installment", "payment_provider", "discount_before_payment", "discount_before_payment_due_date",
    "description", "qrcode_number", "os_code", "os_identifier", "by_mail", "by_whatsapp",
    "fees", "fine", "paid_at", "paid_method", "manual", "billing_number",
)  # fmt: skip
"""The 39 columns of the payments export, in payment.json order."""

COMPANY_COLUMNS: tuple[str, ...] = (
    "company_id", "consider_for_revenue", "first_active_date", "last_active_date",
    "is_considered_for_recovery", "is_cosidered_for_subscription", "is_considered_for_wapp_messages_sent",
    "recovery_tax", "whatsapp_tax", "monthly_fee_tax", "has_fit_bank", "is_using_kobana",
    "bank_account_type", "company_size", "has_no_issues", "is_dropout", "is_churn", "is_preactive",
    "is_trial_m_1", "is_trial_m_2", "payments_issued_m-1", "payments_issued_with_due_date_same_month_m-1",
    "median_of_issued_payments", "growth_rate", "is_growing", "is_shrinking", "is_churn_risk",
    "is_key_account", "is_key_onboarding",
)  # fmt: skip
"""The 29 columns of the company profiling export (original names, '-' included)."""

TRUTH_COLUMNS: tuple[str, ...] = ("company_id", "customer_id", "behaviour", "valid_from", "valid_to", "cause")

BEHAVIOURS: tuple[str, ...] = ("punctual", "doubtful", "forgetful", "bad", "drop_out")
PUNCTUAL, DOUBTFUL, FORGETFUL, BAD, DROP_OUT = range(5)
CAUSES: tuple[str, ...] = ("initial", "switch", "drop_out", "drift")
METHODS: tuple[str, ...] = ("generic", "boleto", "bolepix", "pix", "credit_card", "debit_card", "bank_transfer")
PIX = METHODS.index("pix")

# ---------------------------------------------------------------- calibration
# Targets are EXPORT_PROFILE.md; the figures below were tuned by generating
# 20,000 customers and comparing (tests/data/test_generator_calibration.py).
CUSTOMERS_PER_COMPANY = 250
BILLS_NB_R, BILLS_NB_P = 3, 0.6  # 1 + NB(3, 0.6): P(1)=.22, P(<=2)=.48, P(<=3)=.68, P(<=4)=.82
BILLS_TAIL_SHARE, BILLS_TAIL_MIN, BILLS_TAIL_ALPHA, BILLS_MAX = 0.025, 10, 1.3, 1_000
PERIOD_DAYS = np.array([30, 15, 7, 60, 90])  # billing period of a customer's series
PERIOD_P = np.array([0.62, 0.1, 0.05, 0.13, 0.10])
PLAN_SIZES = np.array([2, 3, 4, 6, 10, 12])  # typical installments of an installment customer
PLAN_SIZES_P = np.array([0.3, 0.25, 0.15, 0.15, 0.08, 0.07])
HEAVY_PLAN_SIZES = np.array([1, 6, 10, 12, 12])  # customers with more than BILLS_TAIL_MIN bills
INSTALLMENT_SHARE = 0.65  # customers whose bills come in plans of several installments
MAX_INSTALLMENTS = 12
INTERRUPTED_PLAN_SHARE = 0.05  # chance that a bill starts a new plan early
ACTIVE_SHARE = 0.88  # customers still billed in the last period before the export date
TERMS_DAYS = np.array([3, 5, 7, 10, 15, 20, 30, 45])  # issue -> due
TERMS_P = np.array([0.05, 0.1, 0.1, 0.15, 0.15, 0.12, 0.18, 0.15])
AMOUNT_LOG_MEDIAN, AMOUNT_SIGMA_CUSTOMER, AMOUNT_SIGMA_PLAN = np.log(680.0), 1.1, 0.72
AMOUNT_MAX = 1e7

# behaviour types: punctual, doubtful, forgetful, bad, drop_out
INITIAL_MIX = np.array([0.46, 0.24, 0.14, 0.16, 0.0])
INITIAL_MIX_CHURN_RISK = np.array([0.36, 0.24, 0.18, 0.22, 0.0])  # customers of companies at churn risk
SWITCH_MIX = np.array([0.35, 0.30, 0.20, 0.15, 0.0])  # where a random switch goes (never to itself)
TYPE_SWITCH_PER_MONTH = 0.03
DROP_OUT_SHARE = 0.10  # customers who stop paying from a date between their first and last due date
CANCEL_P = np.array([0.19, 0.20, 0.21, 0.24, 0.24])
NEVER_PAY_P = np.array([0.02, 0.09, 0.18, 0.65, 0.97])
LATE_P = np.array([0.045, 0.21, 0.51, 0.76, 0.6])  # base chance that a paid bill is paid late
DELAY_MEAN_DAYS = np.array([3.0, 5.0, 8.0, 15.0, 25.0])  # late payers, companies not at churn risk
CHURN_RISK_SHARE, CHURN_RISK_LOGIT, CHURN_RISK_DELAY = 0.15, 0.5, 2.2
AMOUNT_LOGIT = 0.15  # per unit of log(amount / 680)
METHOD_LOGIT = np.array([0.0, 0.25, 0.1, -0.2, -0.6, -0.3, 0.1])
WHATSAPP_LOGIT, MAIL_LOGIT = -0.35, -0.1
DELAY_SHAPE = 0.9
ON_DUE_DAY_SHARE, EARLY_MEAN_DAYS, VERY_EARLY_SHARE = 0.35, 3.0, 0.08
METHOD_MIX = np.array([0.35, 0.25, 0.12, 0.10, 0.10, 0.03, 0.05])
METHOD_LOYALTY = 0.85  # share of a customer's bills using the customer's usual method
RENEGOTIATED_SHARE = 0.03
DISCOUNT_SHARE = 0.04
DRIFT_CUSTOMER_SHARE, DRIFT_PIX_SHARE = 0.35, 0.45
WORSE = np.array([FORGETFUL, FORGETFUL, BAD, BAD, DROP_OUT])  # drift: one step toward late behaviour
# Rare statuses: profile counts of each, over the count of the status family they belong to.
RARE_CANCELLED = {"error": 1771, "derrogatory_cancelled": 10, "protest_cancelled": 4}  # of 79,876
RARE_PAST_DUE = {"processing_protest": 225, "processing_derrogatory": 159, "derrogatory": 88, "protested": 78,
                 "pending_derrogatory": 10}  # of 41,556 unpaid past due  # fmt: skip
RARE_PAID_LATE = {"paid_after_derrogatory": 54, "paid_after_protested": 51}  # of 153,765 paid
CANCELLED_FAMILY, PAST_DUE_FAMILY, PAID_FAMILY = 79_876, 41_556, 153_765
EMPTY_SHA256 = hashlib.sha256(b"").digest().hex(" ")
DEFAULT_CHUNK_CUSTOMERS = 25_000
_COPY_ROWS = 20_000  # rows per COPY/CSV write (bounds the text held in memory)


class GeneratorError(ValueError):
    """A generator request that cannot be met, explained in one line."""


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate: ``customers`` over ``months`` of history from ``start``.

    ``start`` None -> ``months`` before today (settings timezone), so the data
    ends around today.  ``drift_at`` must lie inside the history.  Data depend on
    ``chunk_customers`` too (each chunk has its own random stream).
    """

    customers: int = 20_000
    seed: int = 42
    start: date | None = None
    months: int = 24
    drift_at: date | None = None
    chunk_customers: int = DEFAULT_CHUNK_CUSTOMERS


def add_months(day: date, months: int) -> date:
    """Return ``day`` moved by ``months`` calendar months (day clamped to the month's length)."""
    year, month0 = divmod(day.month - 1 + months, 12)
    year += day.year
    return date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


def hashed(prefix: str, keys) -> np.ndarray:
    """Return sha256(f"{prefix}:{key}") of each key as 32 space-separated hex bytes (object array).

    hashlib has no vector API; this is one C call per key (about 1 µs).
    """
    sha = hashlib.sha256
    return np.array([sha(f"{prefix}:{k}".encode()).digest().hex(" ") for k in keys], dtype=object)


def _pick(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` (rows sum to 1): index drawn with those probabilities."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), probs.shape[1] - 1)


def _fmt_days(origin: np.datetime64, days: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """'YYYY-MM-DD' strings of ``origin + days``; '' where ``valid`` is False."""
    out = np.datetime_as_string(origin + days.astype("timedelta64[D]"), unit="D").astype(object)
    if valid is not None:
        out[~valid] = ""
    return out


def _fmt_stamps(origin: np.datetime64, days: np.ndarray, seconds: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """'YYYY-MM-DD HH:MM:SS.000' strings (the export's timestamp format); '' where not ``valid``."""
    moment = (origin + days.astype("timedelta64[D]")).astype("datetime64[s]") + seconds.astype("timedelta64[s]")
    out = np.strings.replace(np.datetime_as_string(moment.astype("datetime64[ms]"), unit="ms"), "T", " ").astype(object)
    if valid is not None:
        out[~valid] = ""
    return out


def _fmt_bool(values: np.ndarray) -> np.ndarray:
    return np.where(values, "true", "false").astype(object)


def _fmt_money(values: np.ndarray) -> list[str]:
    return [repr(v) for v in np.round(values, 2).tolist()]


@dataclass
class GeneratedChunk:
    """One chunk of customers: bills in the export layout and their truth segments.

    ``payments``: one row per bill, the 39 export columns as the CSV holds them
    (dates and timestamps as text, '' for empty; discount_before_payment_due_date
    as epoch seconds, 0 = none).  ``truth``: one row per behaviour segment.
    """

    payments: pd.DataFrame
    truth: pd.DataFrame


@dataclass
class SyntheticExport:
    """A generator run: export date window, companies and a lazy stream of customer chunks."""

    config: GeneratorConfig
    start: date
    end: date
    companies: pd.DataFrame  # export layout, 29 columns (original names)
    _company: dict = field(repr=False, default_factory=dict)

    @property
    def end_days(self) -> int:
        """Days from start to the export date E (bills paid before E are paid)."""
        return (self.end - self.start).days

    def chunks(self) -> Iterator[GeneratedChunk]:
        """Yield the customers in chunks of ``config.chunk_customers``, in order."""
        size = self.config.chunk_customers
        for index, lo in enumerate(range(0, self.config.customers, size)):
            yield _generate_chunk(self, index, lo, min(lo + size, self.config.customers))


def build_export(config: GeneratorConfig, today: date | None = None) -> SyntheticExport:
    """Resolve the dates of ``config`` and draw the companies; customers come later from ``chunks()``.

    ``today`` (the export date when ``config.start`` is None; callers pass
    ``settings.today()``).  Raises :class:`GeneratorError` for an empty
    request, a drift date outside the history, or neither a start nor today.
    """
    if config.customers < 1 or config.months < 1 or config.chunk_customers < 1:
        raise GeneratorError("customers, months and chunk size must be at least 1")
    if config.start is None:
        if today is None:
            raise GeneratorError("the generator needs a start date or today's date (settings.today())")
        start = add_months(today, -config.months)
    else:
        start = config.start
    end = add_months(start, config.months)
    if config.drift_at is not None and not (start < config.drift_at < end):
        raise GeneratorError(f"--drift-at {config.drift_at}: expected a date after the start {start} and before the end {end}")
    rng = np.random.default_rng([config.seed, 0])
    n_comp = max(1, round(config.customers / CUSTOMERS_PER_COMPANY))
    seed = config.seed
    keys = range(n_comp)
    comp: dict[str, np.ndarray] = {
        "weight": (w := rng.lognormal(0.0, 1.0, n_comp)) / w.sum(),
        "id": hashed(f"ps{seed}:company", keys),
        "name": hashed(f"ps{seed}:company-name", keys),
        "document": hashed(f"ps{seed}:company-document", keys),
        "churn_risk": rng.random(n_comp) < CHURN_RISK_SHARE,
        "method_mix": rng.dirichlet(METHOD_MIX * 20, n_comp),
        "term": rng.choice(TERMS_DAYS, n_comp, p=TERMS_P),
        "fees": rng.choice([0.0, 1.0, 1.0, 2.0, 3.0, 5.0, 10.0], n_comp),
        "fine": rng.choice([0.0, 2.0, 2.0, 2.0, 1.0, 5.0, 10.0], n_comp),
        "provider": rng.choice(np.array(["", "kobana", "fitbank"], dtype=object), n_comp, p=[0.5, 0.3, 0.2]),
        "mail_p": rng.beta(2, 2, n_comp),
        "wapp_p": np.where(rng.random(n_comp) < 0.7, rng.beta(5, 2, n_comp), 0.05),
    }
    companies = _companies_frame(rng, comp, start, end, config.customers)
    return SyntheticExport(config=config, start=start, end=end, companies=companies, _company=comp)


def _companies_frame(rng, comp, start: date, end: date, customers: int) -> pd.DataFrame:
    """The company profiling export for the generated companies (nulls at profile rates)."""
    n = len(comp["id"])
    origin = np.datetime64(start)
    first = rng.integers(-720, 30, n)
    last = (end - start).days - rng.integers(0, 20, n)
    issued = np.round(comp["weight"] * customers * 4.1 / 3).astype(float)
    half_null = rng.random(n) < 0.5
    growth = np.round(rng.normal(5, 40, n), 2)
    growth[rng.random(n) < 0.03] = np.inf
    growth[rng.random(n) < 0.56] = np.nan
    size = rng.choice(np.array(["micro", "small", "medium", "large", "enterprise"], dtype=object), n, p=[0.35, 0.3, 0.2, 0.1, 0.05])
    size[rng.random(n) < 0.14] = ""
    wapp = _fmt_bool(comp["wapp_p"] > 0.05)
    wapp[rng.random(n) < 0.14] = ""
    flag = lambda p: _fmt_bool(rng.random(n) < p)  # noqa: E731
    frame = {
        "company_id": comp["id"],
        "consider_for_revenue": flag(0.8),
        "first_active_date": _fmt_stamps(origin, first, rng.integers(0, 86400, n), rng.random(n) >= 0.54),
        "last_active_date": _fmt_stamps(origin, last, rng.integers(0, 86400, n), rng.random(n) >= 0.28),
        "is_considered_for_recovery": flag(0.6),
        "is_cosidered_for_subscription": flag(0.3),
        "is_considered_for_wapp_messages_sent": wapp,
        "recovery_tax": np.round(rng.uniform(0, 0.02, n), 4),
        "whatsapp_tax": np.round(rng.uniform(0, 0.35, n), 2),
        "monthly_fee_tax": np.round(rng.uniform(0, 1500, n), 2),
        "has_fit_bank": _fmt_bool(comp["provider"] == "fitbank"),
        "is_using_kobana": _fmt_bool(comp["provider"] == "kobana"),
        "bank_account_type": rng.choice(np.array(["checking", "payment"], dtype=object), n),
        "company_size": size,
        "has_no_issues": flag(0.7),
        "is_dropout": flag(0.05),
        "is_churn": flag(0.05),
        "is_preactive": flag(0.05),
        "is_trial_m_1": flag(0.03),
        "is_trial_m_2": flag(0.03),
        "payments_issued_m-1": np.where(half_null, np.nan, issued),
        "payments_issued_with_due_date_same_month_m-1": np.where(half_null, np.nan, np.round(issued * 0.6)),
        "median_of_issued_payments": np.where(half_null, np.nan, np.round(issued * 0.9)),
        "growth_rate": growth,
        "is_growing": _fmt_bool(np.nan_to_num(growth, nan=0, posinf=1) > 10),
        "is_shrinking": _fmt_bool(np.nan_to_num(growth, nan=0, posinf=1) < -10),
        "is_churn_risk": _fmt_bool(comp["churn_risk"]),
        "is_key_account": flag(0.05),
        "is_key_onboarding": flag(0.03),
    }
    return pd.DataFrame(frame, columns=list(COMPANY_COLUMNS))


def _generate_chunk(export: SyntheticExport, index: int, lo: int, hi: int) -> GeneratedChunk:
    """Customers ``lo..hi-1`` (global indexes): their bills and truth segments."""
    cfg, comp = export.config, export._company
    rng = np.random.default_rng([cfg.seed, 1, index])
    seed, n, n_comp, E = cfg.seed, hi - lo, len(comp["id"]), export.end_days
    gidx = np.arange(lo, hi)

    # ---- customers
    company = np.where(gidx < n_comp, gidx, rng.choice(n_comp, n, p=comp["weight"]))
    churn = comp["churn_risk"][company]
    body = 1 + rng.negative_binomial(BILLS_NB_R, BILLS_NB_P, n)
    tail = np.minimum(BILLS_TAIL_MIN * (1.0 - rng.random(n)) ** (-1.0 / BILLS_TAIL_ALPHA), BILLS_MAX).astype(np.int64)
    n_bills = np.where(rng.random(n) < BILLS_TAIL_SHARE, tail, body)
    period = np.minimum(rng.choice(PERIOD_DAYS, n, p=PERIOD_P).astype(float), (E - 1) / n_bills)
    plan_size = np.where(rng.random(n) < INSTALLMENT_SHARE, rng.choice(PLAN_SIZES, n, p=PLAN_SIZES_P), 1)
    # heavy customers (business buyers) buy on longer plans
    plan_size = np.where(n_bills > BILLS_TAIL_MIN, rng.choice(HEAVY_PLAN_SIZES, n), plan_size)
    term = np.clip(comp["term"][company] + rng.integers(-2, 3, n), 1, None)
    active = rng.random(n) < ACTIVE_SHARE
    amount_base = np.exp(AMOUNT_LOG_MEDIAN + AMOUNT_SIGMA_CUSTOMER * rng.standard_normal(n))
    usual_method = _pick(rng, comp["method_mix"][company])
    mail_p = np.clip(comp["mail_p"][company] + rng.normal(0, 0.1, n), 0, 1)
    wapp_p = np.clip(comp["wapp_p"][company] + rng.normal(0, 0.1, n), 0, 1)
    parent_type = np.where(rng.random(n) < 0.07, "subscription", "billing").astype(object)

    # ---- bills: position in the customer's series, plans of consecutive bills
    m = int(n_bills.sum())
    cust = np.repeat(np.arange(n), n_bills)
    first_bill = np.cumsum(n_bills) - n_bills
    last_bill = first_bill + n_bills - 1
    pos = np.arange(m) - first_bill[cust]
    # plans of `plan_size` bills counted back from the last bill (the first plan may be shorter:
    # it started before the customer's history), plus some interrupted, shorter plans
    plan_start = ((n_bills[cust] - pos) % plan_size[cust] == 0) | (pos == 0)
    plan_start |= rng.random(m) < INTERRUPTED_PLAN_SHARE
    plan = np.cumsum(plan_start) - 1
    plan_first = np.flatnonzero(plan_start)
    plan_pos = np.arange(m) - plan_first[plan]
    too_long = (plan_pos > 0) & (plan_pos % MAX_INSTALLMENTS == 0)
    if too_long.any():
        plan_start |= too_long
        plan = np.cumsum(plan_start) - 1
        plan_first = np.flatnonzero(plan_start)
        plan_pos = np.arange(m) - plan_first[plan]
    n_inst = np.bincount(plan)[plan]
    start_pos = pos[plan_first][plan]  # position of the plan's first bill
    last_start = pos[plan_first[plan[last_bill]]]  # per customer: where its last plan starts

    # ---- dates (days since start): the last plan is issued in the last period before E
    # for active customers, earlier for the others; the rest of the series goes back from it.
    earliest = last_start * period  # the first plan must not be issued before the start
    u = rng.random(n)
    last_issue = np.where(
        active,
        np.maximum(earliest, E - 1 - u * period),
        earliest + u * np.maximum(E - 1 - period - earliest, 0.0),
    )
    issue_f = last_issue[cust] - (last_start[cust] - start_pos) * period[cust]
    issue_day = np.clip(np.floor(issue_f).astype(np.int64), 0, E - 1)
    # installments fall due a period apart, at least monthly (heavy customers issue often, pay monthly)
    installment_days = np.maximum(period, 30.0)
    due_day = np.floor(issue_f + term[cust] + plan_pos * installment_days[cust]).astype(np.int64)
    due_day = np.maximum(due_day, issue_day)

    # ---- behaviour segments and the type at each bill's due date
    seg_cust, seg_day, seg_type, seg_cause = _behaviour_segments(
        rng, export, churn, issue_day[first_bill], due_day[first_bill], due_day[last_bill]
    )
    key = np.int64(1) << 24
    seg_key = seg_cust.astype(np.int64) * key + seg_day
    btype = seg_type[np.searchsorted(seg_key, cust * key + due_day, side="right") - 1]

    # ---- method, channel, amount
    drift_day = (cfg.drift_at - export.start).days if cfg.drift_at is not None else None
    method = np.where(rng.random(m) < METHOD_LOYALTY, usual_method[cust], _pick(rng, comp["method_mix"][company[cust]]))
    if drift_day is not None:
        method = np.where((issue_day >= drift_day) & (rng.random(m) < DRIFT_PIX_SHARE), PIX, method)
    by_mail = rng.random(m) < mail_p[cust]
    by_wapp = rng.random(m) < wapp_p[cust]
    n_plans = len(plan_first)
    plan_amount = amount_base[cust[plan_first]] * np.exp(AMOUNT_SIGMA_PLAN * rng.standard_normal(n_plans))
    billing = np.round(np.clip(plan_amount, 5.0, AMOUNT_MAX), 2)[plan]
    log_amount = np.clip(np.log(billing / 680.0), -3, 3)

    # ---- payment behaviour
    bchurn = churn[cust]
    cancelled = rng.random(m) < CANCEL_P[btype]
    never = rng.random(m) < NEVER_PAY_P[btype]
    logit = (
        np.log(LATE_P[btype] / (1 - LATE_P[btype]))
        + CHURN_RISK_LOGIT * bchurn
        + AMOUNT_LOGIT * log_amount
        + METHOD_LOGIT[method]
        + WHATSAPP_LOGIT * by_wapp
        + MAIL_LOGIT * by_mail
    )
    late = rng.random(m) < 1 / (1 + np.exp(-logit))
    mean_delay = DELAY_MEAN_DAYS[btype] * np.where(bchurn, CHURN_RISK_DELAY, 1.0) * (1 + 0.1 * log_amount)
    late_days = 1 + np.floor(rng.gamma(DELAY_SHAPE, np.maximum(mean_delay - 0.5, 0.1) / DELAY_SHAPE)).astype(np.int64)
    early_days = np.where(
        rng.random(m) < ON_DUE_DAY_SHARE,
        0,
        np.where(rng.random(m) < VERY_EARLY_SHARE, rng.integers(5, 31, m), np.ceil(rng.exponential(EARLY_MEAN_DAYS, m))),
    ).astype(np.int64)
    paid_day = np.maximum(np.where(late, due_day + late_days, due_day - early_days), issue_day)
    paid = ~cancelled & ~never & (paid_day < E)
    past_due = ~cancelled & ~paid & (due_day < E)

    status = np.full(m, "pending", dtype=object)
    status[paid] = "paid"
    status[past_due] = "overdue"
    status[cancelled] = "cancelled"
    _rare(rng, status, cancelled, RARE_CANCELLED, CANCELLED_FAMILY, int(cancelled.sum()))
    _rare(rng, status, past_due & (E - due_day > 15), RARE_PAST_DUE, PAST_DUE_FAMILY, int(past_due.sum()))
    _rare(rng, status, paid & (paid_day - due_day > 20), RARE_PAID_LATE, PAID_FAMILY, int(paid.sum()))
    captured = paid & (method == METHODS.index("credit_card")) & (rng.random(m) < 21 / 153_765 / 0.1)
    status[captured] = "payment_captured"

    # ---- money
    discount = np.where(rng.random(m) < DISCOUNT_SHARE, np.minimum(np.round(billing * rng.choice([0.02, 0.05, 0.1], m), 2), 1190.0), 0.0)
    discount_day = due_day - rng.choice([3, 5, 10], m)
    fees = comp["fees"][company[cust]]
    fine = comp["fine"][company[cust]].copy()
    outlier = rng.random(m) < 0.0005
    fine[outlier] = np.round(billing[outlier] * rng.uniform(0.1, 2.0, outlier.sum()), 2)
    delay = paid_day - due_day
    paid_amount = np.where(
        paid,
        billing
        + np.where(delay > 0, billing * (fine / 100 * ~outlier + fees / 100 * delay / 30), 0.0)
        - np.where(paid_day <= discount_day, discount, 0.0),
        0.0,
    )
    payment_amount = np.where(rng.random(m) < 0.25, billing * rng.uniform(0.4, 0.95, m), billing - discount)

    renegotiated = rng.random(m) < RENEGOTIATED_SHARE
    original_due = np.where(renegotiated, np.maximum(issue_day, due_day - rng.integers(5, 61, m)), due_day)

    # ---- text columns
    origin = np.datetime64(export.start)
    cust_keys = gidx.tolist()
    cust_id = hashed(f"ps{seed}:customer", cust_keys)
    cust_name = hashed(f"ps{seed}:customer-name", (gidx - (gidx % 9 == 8)).tolist())  # ~1 in 9 shares a name
    plan_keys = [f"{g}:{p}" for g, p in zip(gidx[cust[plan_first]].tolist(), pos[plan_first].tolist())]
    plan_digest = [hashlib.sha256(f"ps{seed}:billing:{k}".encode()).digest() for k in plan_keys]
    billing_number = np.array([d.hex(" ") for d in plan_digest], dtype=object)[plan]
    parent_id = np.array([_uuid_text(d) for d in plan_digest], dtype=object)[plan]
    product = hashed(f"ps{seed}:description", [f"{g}:{j}" for g in cust_keys for j in range(3)])
    description = product[cust * 3 + plan % 3]
    os_customer = hashed(f"ps{seed}:os", cust_keys)
    os_code = np.where(rng.random(n) < 0.75, EMPTY_SHA256, os_customer).astype(object)[cust]
    bill_keys = [f"{g}:{p}" for g, p in zip(gidx[cust].tolist(), pos.tolist())]
    payment_number = hashed(f"ps{seed}:payment", bill_keys)

    qr = (np.isin(method, [PIX, METHODS.index("bolepix")]) | ((method == 0) & (rng.random(m) < 0.25)))
    qrcode = np.full(m, "", dtype=object)
    if qr.any():
        qr_hex = rng.integers(0, 2**62, (int(qr.sum()), 2))
        qrcode[qr] = [f"00020126580014br.gov.bcb.pix0136{a:016x}{b:016x}5204000053039865802BR6304" for a, b in qr_hex.tolist()]
    paid_method = np.full(m, "", dtype=object)
    pm_set = paid & (rng.random(m) < 0.62)
    pm = np.where(np.isin(method, [PIX]) | ((method == 2) & (rng.random(m) < 0.5)), "pix", np.where(np.isin(method, [1, 2]), "boleto", "generic"))
    paid_method[pm_set] = pm[pm_set]
    paid_secs = rng.integers(6 * 3600, 23 * 3600, m)
    due_secs = np.where(rng.random(m) < 0.95, 86399, rng.integers(0, 86400, m))
    paid_stamp = _fmt_stamps(origin, paid_day, paid_secs, paid)
    discount_epoch = np.where(
        discount > 0,
        (np.datetime64(export.start, "s") + (discount_day * 86400 + 12 * 3600).astype("timedelta64[s]")).astype(np.int64),
        0,
    )
    bc = company[cust]
    payments = pd.DataFrame(
        {
            "company_id": comp["id"][bc],
            "company_name": comp["name"][bc],
            "company_document": comp["document"][bc],
            "company_trade_name": comp["name"][bc],
            "customer_id": cust_id[cust],
            "customer_name": cust_name[cust],
            "customer_trade_name": cust_name[cust],
            "parent_type": parent_type[cust],
            "parent_id": parent_id,
            "payment_number": payment_number,
            "issue_date_dte": _fmt_days(origin, issue_day),
            "original_due_date_dte": _fmt_days(origin, original_due),
            "due_date_dte": _fmt_days(origin, due_day),
            "paid_at_dte": _fmt_days(origin, paid_day, paid),
            "issue_at_tsmp": _fmt_stamps(origin, issue_day, rng.integers(0, 86400, m)),
            "original_due_date_tsmp": _fmt_stamps(origin, original_due, due_secs),
            "due_date_tsmp": _fmt_stamps(origin, due_day, due_secs),
            "paid_at_tsmp": paid_stamp,
            "payment_method": np.array(METHODS, dtype=object)[method],
            "payment_status": status,
            "paid_amount": np.round(paid_amount, 2),
            "billing_amount": billing,
            "payment_amount": np.round(payment_amount, 2),
            "installment": (pd.Series(plan_pos + 1).astype(str) + "/" + pd.Series(n_inst).astype(str)).to_numpy(dtype=object),
            "payment_provider": comp["provider"][bc],
            "discount_before_payment": discount,
            "discount_before_payment_due_date": discount_epoch,
            "description": description,
            "qrcode_number": qrcode,
            "os_code": os_code,
            "os_identifier": os_code,
            "by_mail": _fmt_bool(by_mail),
            "by_whatsapp": _fmt_bool(by_wapp),
            "fees": fees,
            "fine": fine,
            "paid_at": paid_stamp,
            "paid_method": paid_method,
            "manual": np.full(m, "", dtype=object),
            "billing_number": billing_number,
        },
        columns=list(PAYMENT_COLUMNS),
    )
    seg_end = np.r_[seg_day[1:], 0]
    has_next = np.r_[seg_cust[1:] == seg_cust[:-1], False]
    truth = pd.DataFrame(
        {
            "company_id": comp["id"][company[seg_cust]],
            "customer_id": cust_id[seg_cust],
            "behaviour": np.array(BEHAVIOURS, dtype=object)[seg_type],
            "valid_from": _fmt_days(origin, seg_day),
            "valid_to": _fmt_days(origin, seg_end, has_next),
            "cause": np.array(CAUSES, dtype=object)[seg_cause],
        },
        columns=list(TRUTH_COLUMNS),
    )
    return GeneratedChunk(payments=payments, truth=truth)


def _uuid_text(digest: bytes) -> str:
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[digest[8] & 3]}{h[17:20]}-{h[20:32]}"


def _rare(rng, status: np.ndarray, eligible: np.ndarray, counts: dict[str, int], profile_family: int, family: int) -> None:
    """Give some ``eligible`` bills the rare statuses of ``counts``.

    Each status gets its profile share of its family (``count / profile_family``)
    times this chunk's ``family`` size, spread over the eligible bills.
    """
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return
    u = rng.random(len(idx))
    edge = 0.0
    for name, count in counts.items():
        share = min(count / profile_family * family / len(idx), 1.0 - edge)
        status[idx[(u >= edge) & (u < edge + share)]] = name
        edge += share


def _behaviour_segments(rng, export: SyntheticExport, churn, first_issue, first_due, last_due):
    """Per customer, the behaviour segments (customer, first day, type, cause), sorted by customer and day.

    The first segment starts at the customer's first issue day; random switches
    come at ``TYPE_SWITCH_PER_MONTH``; drop-outs and the drift are forced
    switches.  Same-day events keep the last one, and a "switch" to the same type is dropped.
    """
    n, E = len(first_issue), export.end_days
    span = np.maximum(E - first_issue, 1)
    n_switch = np.minimum(rng.poisson(TYPE_SWITCH_PER_MONTH * span / 30.0), 12)
    sw_cust = np.repeat(np.arange(n), n_switch)
    sw_day = first_issue[sw_cust] + 1 + np.floor(rng.random(len(sw_cust)) * (span[sw_cust] - 1)).astype(np.int64)
    drop = np.flatnonzero(rng.random(n) < DROP_OUT_SHARE)
    drop_end = np.maximum(first_due[drop], np.minimum(last_due[drop], E - 1))
    drop_day = first_due[drop] + np.floor(rng.random(len(drop)) * (drop_end - first_due[drop] + 1)).astype(np.int64)
    parts_cust = [np.arange(n), sw_cust, drop]
    parts_day = [first_issue, sw_day, drop_day]
    parts_cause = [np.zeros(n, np.int8), np.ones(len(sw_cust), np.int8), np.full(len(drop), 2, np.int8)]
    if export.config.drift_at is not None:
        drift_day = (export.config.drift_at - export.start).days
        chosen = rng.random(n) < DRIFT_CUSTOMER_SHARE
        drifted = np.flatnonzero(chosen & (first_issue < drift_day))
        arrive_drifted = chosen & (first_issue >= drift_day)  # customers arriving later start one step worse
        parts_cust.append(drifted)
        parts_day.append(np.full(len(drifted), drift_day, np.int64))
        parts_cause.append(np.full(len(drifted), 3, np.int8))
    ev_cust = np.concatenate(parts_cust)
    ev_day = np.concatenate(parts_day).astype(np.int64)
    ev_cause = np.concatenate(parts_cause)
    order = np.lexsort((ev_cause, ev_day, ev_cust))
    ev_cust, ev_day, ev_cause = ev_cust[order], ev_day[order], ev_cause[order]
    counts = np.bincount(ev_cust, minlength=n)
    rank = np.arange(len(ev_cust)) - (np.cumsum(counts) - counts)[ev_cust]

    ev_type = np.empty(len(ev_cust), np.int8)
    init = np.flatnonzero(rank == 0)
    ev_type[init] = _pick(rng, np.where(churn[:, None], INITIAL_MIX_CHURN_RISK, INITIAL_MIX))
    if export.config.drift_at is not None:
        ev_type[init] = np.where(arrive_drifted, WORSE[ev_type[init]], ev_type[init])
    switch_probs = np.tile(SWITCH_MIX, (len(BEHAVIOURS), 1))
    np.fill_diagonal(switch_probs, 0.0)
    switch_probs[DROP_OUT] = 0.0
    switch_probs[DROP_OUT, DROP_OUT] = 1.0
    for j in range(1, int(rank.max()) + 1):
        idx = np.flatnonzero(rank == j)
        prev = ev_type[idx - 1]
        cause = ev_cause[idx]
        new = _pick(rng, switch_probs[prev])  # cause 1
        new = np.where(cause == 2, DROP_OUT, new)
        new = np.where(cause == 3, WORSE[prev], new)
        ev_type[idx] = np.where(prev == DROP_OUT, DROP_OUT, new)  # drop-out is for good
    # same customer and day: the last event wins; then drop events that change nothing
    keep = np.r_[(ev_cust[1:] != ev_cust[:-1]) | (ev_day[1:] != ev_day[:-1]), True]
    ev_cust, ev_day, ev_type, ev_cause = ev_cust[keep], ev_day[keep], ev_type[keep], ev_cause[keep]
    first_of_customer = np.r_[True, ev_cust[1:] != ev_cust[:-1]]
    changed = first_of_customer | np.r_[True, ev_type[1:] != ev_type[:-1]]
    # the first event of a customer may have been replaced by a same-day later one: it is still the start
    ev_cause = np.where(first_of_customer, 0, ev_cause).astype(np.int8)
    return ev_cust[changed], ev_day[changed], ev_type[changed], ev_cause[changed]


# ---------------------------------------------------------------- writers
def _csv_text(frame: pd.DataFrame) -> str:
    """CSV text (no header) of ``frame``; money as shortest repr, '' for empty; no quoting needed."""
    cols = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.kind == "f":
            cols.append(["" if v != v else ("inf" if v == np.inf else repr(v)) for v in values.tolist()])
        elif values.dtype.kind in "iu":
            cols.append([str(v) for v in values.tolist()])
        else:
            cols.append(values.tolist())
    return "".join(line + "\n" for line in map(",".join, zip(*cols)))


def _row_batches(frame: pd.DataFrame) -> Iterator[pd.DataFrame]:
    for lo in range(0, len(frame), _COPY_ROWS):
        yield frame.iloc[lo : lo + _COPY_ROWS]


def _payments_for_database(payments: pd.DataFrame, source: str) -> pd.DataFrame:
    """The export frame with the epoch-seconds discount date as a date (NULL for 0) and the source."""
    out = payments.copy()
    epoch = out["discount_before_payment_due_date"].to_numpy()
    dates = np.datetime_as_string(epoch.astype("datetime64[s]"), unit="D").astype(object)
    dates[epoch == 0] = ""
    out["discount_before_payment_due_date"] = dates
    out["source_file"] = source
    return out


def generate_to_csv(config: GeneratorConfig, folder: Path, today: date | None = None) -> str:
    """Write payments.csv, companies.csv (export layouts) and synthetic_truth.csv to ``folder``.

    Returns a one-line summary.  payments.csv has the 39 export columns in
    payment.json order; companies.csv keeps the export's column names
    (``payments_issued_m-1``).  Existing files are overwritten.
    """
    t0 = time.perf_counter()
    export = build_export(config, today)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export.companies.to_csv(folder / "companies.csv", index=False, na_rep="")
    bills = segments = 0
    with open(folder / "payments.csv", "w", encoding="utf-8", newline="") as pay, open(
        folder / "synthetic_truth.csv", "w", encoding="utf-8", newline=""
    ) as tru:
        pay.write(",".join(PAYMENT_COLUMNS) + "\n")
        tru.write(",".join(TRUTH_COLUMNS) + "\n")
        for chunk in export.chunks():
            for batch in _row_batches(chunk.payments):
                pay.write(_csv_text(batch))
            tru.write(_csv_text(chunk.truth))
            bills += len(chunk.payments)
            segments += len(chunk.truth)
    return _summary(export, bills, segments, time.perf_counter() - t0, f"to {folder}")


def generate_to_database(engine, config: GeneratorConfig, today: date | None = None) -> str:
    """COPY generated companies, payments and synthetic_truth into the database, in one transaction.

    Refuses (:class:`GeneratorError`) when ``payments``, ``companies`` or
    ``synthetic_truth`` already hold rows: generated data are never mixed with
    loaded or earlier generated data (use a fresh database or truncate them).
    The indexes of ``payments`` and ``synthetic_truth`` are dropped for the
    load and rebuilt at its end, in the same transaction (see
    :func:`_drop_indexes`).  Returns a one-line summary.
    """
    import sqlalchemy as sa

    t0 = time.perf_counter()
    export = build_export(config, today)
    source = f"generator seed={config.seed}"
    bills = segments = 0
    with engine.begin() as conn:
        held = {
            table: conn.execute(sa.text(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1) s")).scalar_one()
            for table in ("payments", "companies", "synthetic_truth")  # fixed list
        }
        busy = [t for t, c in held.items() if c]
        if busy:
            raise GeneratorError(
                f"table(s) {', '.join(busy)} already hold rows; generate writes only into an empty database "
                "(use a fresh DATABASE_URL, `make clean-db`, or TRUNCATE payments, companies, synthetic_truth)"
            )
        raw = conn.connection.driver_connection
        companies = export.companies.rename(columns=lambda c: c.replace("-", "_"))
        companies["source_file"] = source
        _copy(raw, "companies", companies)
        rebuild = _drop_indexes(conn, _BULK_TABLES)
        for chunk in export.chunks():
            frame = _payments_for_database(chunk.payments, source)
            for batch in _row_batches(frame):
                _copy(raw, "payments", batch)
            _copy(raw, "synthetic_truth", chunk.truth)
            bills += len(chunk.payments)
            segments += len(chunk.truth)
            log.info("generated %d bills so far", bills)
        started = time.perf_counter()
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '512MB'"))
        for statement in rebuild:
            conn.execute(sa.text(statement))
        log.info("rebuilt %d indexes in %.1f s", len(rebuild), time.perf_counter() - started)
        conn.execute(
            sa.text(
                "INSERT INTO synthetic_runs (seed, customers, companies, bills, start_date, end_date, drift_at) "
                "VALUES (:seed, :customers, :companies, :bills, :start, :end, :drift_at)"
            ),
            {
                "seed": config.seed, "customers": config.customers, "companies": len(export.companies),
                "bills": bills, "start": export.start, "end": export.end, "drift_at": config.drift_at,
            },
        )  # fmt: skip
    return _summary(export, bills, segments, time.perf_counter() - t0, "into the database")


# Tables bulk-loaded without their indexes: the indexes are dropped inside the
# load's transaction and rebuilt once at its end (one sort per index instead of
# millions of random B-tree inserts: 1M customers took ~10 min, most of it
# index maintenance).  The tables are known to be empty then, and a failed load
# rolls the drop back with everything else.
_BULK_TABLES = ("payments", "synthetic_truth")


def _drop_indexes(conn, tables: tuple[str, ...]) -> list[str]:
    """Drop the indexes (and the unique/primary-key constraints) of ``tables``; return the statements that rebuild them.

    The statements come from the catalog (``pg_get_constraintdef``,
    ``pg_get_indexdef``), so the rebuilt indexes are exactly the migrations'.
    Holds an ACCESS EXCLUSIVE lock on the tables until the transaction ends.
    """
    import sqlalchemy as sa

    rebuild: list[str] = []
    for table in tables:  # fixed list
        rows = conn.execute(
            sa.text(
                "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),"
                "       format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))"
                " FROM pg_constraint c WHERE c.conrelid = CAST(:t AS regclass) AND c.contype IN ('p', 'u')"
                " UNION ALL "
                "SELECT format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)"
                " FROM pg_index i WHERE i.indrelid = CAST(:t AS regclass)"
                "   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)"
            ),
            {"t": table},
        ).all()
        for drop, create in rows:
            conn.execute(sa.text(drop))
            rebuild.append(create)
    return rebuild


def _copy(raw, table: str, frame: pd.DataFrame) -> None:
    """COPY ``frame`` (columns named as in ``table``, a fixed name) as CSV; '' = NULL."""
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(_csv_text(frame))


def _summary(export: SyntheticExport, bills: int, segments: int, seconds: float, where: str) -> str:
    cfg = export.config
    drift = f", drift at {cfg.drift_at}" if cfg.drift_at else ""
    return (
        f"generated {cfg.customers:,} customers, {len(export.companies):,} companies, {bills:,} bills, "
        f"{segments:,} truth segments ({export.start} to {export.end}{drift}, seed {cfg.seed}) {where} in {seconds:.1f} s"
    )
