"""Helpers that write hand-made bills into `payments` for feature/label tests."""

from __future__ import annotations

from datetime import date
from itertools import count

import sqlalchemy as sa

_numbers = count(1)

COLUMNS = (
    "company_id", "customer_id", "payment_number", "issue_date_dte", "original_due_date_dte",
    "due_date_dte", "paid_at_dte", "payment_status", "paid_amount", "billing_amount",
    "installment", "payment_method", "by_mail", "by_whatsapp",
)


def bill(
    customer: str,
    issued: str,
    due: str | None,
    paid: str | None = None,
    status: str | None = None,
    amount: float = 100.0,
    *,
    company: str = "C1",
    original_due: str | None = None,
    installment: str = "1/1",
    method: str = "pix",
    by_mail: bool = False,
    by_whatsapp: bool = False,
    number: str | None = None,
) -> dict:
    """One bill row; status defaults to paid when ``paid`` is given, else pending."""
    d = lambda s: date.fromisoformat(s) if s else None  # noqa: E731
    return {
        "company_id": company,
        "customer_id": customer,
        "payment_number": number or f"P{next(_numbers):06d}",
        "issue_date_dte": d(issued),
        "original_due_date_dte": d(original_due or due),
        "due_date_dte": d(due),
        "paid_at_dte": d(paid),
        "payment_status": status or ("paid" if paid else "pending"),
        "paid_amount": amount if paid else 0,
        "billing_amount": amount,
        "installment": installment,
        "payment_method": method,
        "by_mail": by_mail,
        "by_whatsapp": by_whatsapp,
    }


def insert_bills(engine: sa.Engine, rows: list[dict]) -> None:
    """Insert ``rows`` (from :func:`bill`) into payments."""
    cols = ", ".join(COLUMNS)
    binds = ", ".join(f":{c}" for c in COLUMNS)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO payments ({cols}) VALUES ({binds})"), rows)
