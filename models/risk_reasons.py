"""Reason codes: the top 3 feature groups that raise a customer's risk score, with pt-BR and English texts.

Method (the model's own contribution for that customer, one group at a
time): for each group g of :data:`REASONS`, the contribution is

    risk(x) - risk(x with the features of g set to the good-payer reference)

where risk is the published risk score and the reference is the median of
each feature over the training rows observed ``good`` (stored with the model,
``RiskModel.reference``).  The groups with the largest positive
contributions (at least :data:`MIN_CONTRIBUTION`) are the reasons, largest
first; a customer whose risk no group raises gets none.  The property a test
checks follows from the definition: setting the top reason's features to the
good-payer reference lowers the risk by exactly that contribution.  For the
lateness groups the reference is also "the good way" in the monotone sense
(0 late bills, 0 days past due), so each such reason names something the
customer can change.

Why not SHAP: the chain is three calibrated models combined by a minimum,
which no tree explainer covers exactly; a one-group-at-a-time substitution
of the published score is exact for that score, cheap (one prediction per
group) and groups correlated features (late share, late count) so they do
not split one reason in two.

Codes are stable identifiers: add new ones, never rename or reuse one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# code -> (features, pt-BR text, English text).  Order: ties keep this order.
REASONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "UNPAID_OVERDUE_BILLS": (
        ("n_unpaid_overdue", "overdue_brl"),
        "Boletos vencidos e não pagos",
        "Unpaid overdue bills",
    ),
    "LATE_SHARE_90D_HIGH": (
        ("late_share_90d",),
        "Muitos atrasos nos últimos 90 dias",
        "High share of late bills in the last 90 days",
    ),
    "RECENT_BILLS_LATE": (
        ("recent3_late_share", "recent3_dpd_mean_days"),
        "Atraso nas cobranças mais recentes",
        "The most recent bills were late",
    ),
    "LATE_SHARE_HIGH": (
        ("late_share", "n_late", "late_share_prev90d"),
        "Histórico com muitos pagamentos em atraso",
        "High share of late bills in the history",
    ),
    "DAYS_PAST_DUE_HIGH": (
        ("dpd_mean_days", "dpd_max_days", "dpd_p90_days", "paid_delay_mean_days"),
        "Muitos dias de atraso",
        "Many days past due",
    ),
    "RECENT_LATE_PAYMENT": (
        ("since_last_late_days",),
        "Atraso recente",
        "A recent late payment",
    ),
    "PROTEST_OR_BUREAU_EVENTS": (
        ("n_protest_events",),
        "Protesto ou negativação registrados",
        "Protest or credit-bureau events on record",
    ),
    "FEW_EARLY_PAYMENTS": (
        ("n_paid_early",),
        "Poucos pagamentos antecipados",
        "Few bills paid before the due date",
    ),
    "COMPANY_LATE_SHARE_HIGH": (
        ("company_late_share", "company_is_churn_risk", "company_is_key_account", "company_n_customers"),
        "Carteira da empresa com muitos atrasos",
        "Customers of the same company often pay late",
    ),
    "SHORT_HISTORY": (
        ("tenure_days", "n_bills", "n_matured_bills", "n_matured_90d"),
        "Histórico de pagamentos curto",
        "Short payment history",
    ),
    "OPEN_BALANCE_HIGH": (
        ("n_open", "open_brl", "n_upcoming_open", "n_upcoming_prepaid"),
        "Muitas cobranças em aberto",
        "Many open bills",
    ),
    "INACTIVITY": (
        ("since_last_bill_days", "since_last_payment_days", "n_bills_90d"),
        "Sem pagamentos ou cobranças recentes",
        "No recent payments or bills",
    ),
    "BILLING_PROFILE": (
        ("mean_amount_brl", "max_amount_brl", "instalment_share", "pix_share", "boleto_share",
         "card_share", "by_mail_share", "by_whatsapp_share"),
        "Perfil de cobrança (valores, parcelas, meio de pagamento)",
        "Billing profile (amounts, instalments, payment method)",
    ),
}
# Contributions below this (probability points) are not reasons.
MIN_CONTRIBUTION = 0.005
TOP = 3


def reason_texts(code: str) -> dict[str, str]:
    """{'code', 'pt_br', 'en'} of a reason code; KeyError for an unknown code."""
    _, pt, en = REASONS[code]
    return {"code": code, "pt_br": pt, "en": en}


def contributions(risk_fn, features: pd.DataFrame, reference: pd.Series) -> pd.DataFrame:
    """risk(x) - risk(x with group g at ``reference``) per row and group (columns: the codes).

    ``risk_fn(frame) -> array`` is the published risk score; groups whose
    features are absent from ``reference`` are skipped.
    """
    base = np.asarray(risk_fn(features), dtype=float)
    out = {}
    for code, (columns, _, _) in REASONS.items():
        cols = [c for c in columns if c in reference.index and c in features.columns]
        if not cols:
            continue
        moved = features.copy()
        for c in cols:
            moved[c] = float(reference[c])
        out[code] = base - np.asarray(risk_fn(moved), dtype=float)
    return pd.DataFrame(out, index=features.index)


def top_reasons(contrib: pd.DataFrame, top: int = TOP, minimum: float = MIN_CONTRIBUTION) -> list[list[str]]:
    """Per row, the codes of the ``top`` largest contributions >= ``minimum``, largest first."""
    codes = np.asarray(contrib.columns, dtype=object)
    values = contrib.to_numpy(dtype=float)
    # stable sort on -value keeps REASONS order among ties
    order = np.argsort(-values, axis=1, kind="stable")[:, :top]
    result = []
    for row, idx in zip(values, order):
        result.append([str(codes[j]) for j in idx if row[j] >= minimum])
    return result
