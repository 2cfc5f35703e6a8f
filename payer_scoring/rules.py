"""The payer-category rule's one owner: the categories, their labels, and ``config/rules.toml``.

* :data:`CATEGORIES` / :data:`CLASSES` (the model's classes, in probability
  column order), :data:`CATEGORY_LABELS` (pt-BR) and
  :data:`PROBABILITY_COLUMNS` are the one Python definition of the categories;
  the expectation suites, the results tables and the ``category_labels`` view
  are checked against them by tests (``tests/unit/test_category_rule_owner.py``).
* The counted / matured / late bill definitions and the category CASE live
  once in SQL, as the functions of ``sql/migrations/0007_category_rule.sql``,
  which the feature and label queries call.
* :func:`load_rules` reads and checks the thresholds and status lists;
  :meth:`Rules.sql_params` gives the bind parameters those queries expect;
  :func:`category_for` is the same rule in Python, which the tests hold the
  SQL to.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

# Every status seen in the platform's export (DESIGN.md "Data in").
KNOWN_STATUSES: frozenset[str] = frozenset(
    {
        "paid", "pending", "cancelled", "overdue", "error", "processing_protest",
        "processing_derrogatory", "derrogatory", "protested", "paid_after_derrogatory",
        "paid_after_protested", "payment_captured", "pending_derrogatory",
        "derrogatory_cancelled", "protest_cancelled",
    }
)
DUE_DATE_COLUMNS = ("due_date_dte", "original_due_date_dte")
# Model classes in a fixed order (probability columns p_<class> follow it).
CLASSES: tuple[str, ...] = ("good", "doubtful", "forgetful", "bad")
CATEGORIES: tuple[str, ...] = ("new", *CLASSES)
# pt-BR labels billing shows (DESIGN.md); the category_labels view holds the same.
CATEGORY_LABELS: dict[str, str] = {
    "new": "Novos Pagadores",
    "good": "Bons Pagadores",
    "doubtful": "Pagadores Duvidosos",
    "forgetful": "Pagadores Esquecidos",
    "bad": "Maus Pagadores",
}
# Class-probability columns of the scores frame and the results tables.
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{c}" for c in CLASSES)
# The rules file shipped with the code (settings.rules_file defaults to it).
DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "config" / "rules.toml"

_SCHEMA: dict[str, set[str]] = {
    "statuses": {"paid", "open", "excluded", "unknown_status", "protest_or_derogatory", "event_known_after_days"},
    "maturity": {"grace_days", "due_date_column", "min_matured_bills"},
    "thresholds": {"good_max", "doubtful_max", "forgetful_max"},
    "risk": {"outcome", "hysteresis_margin"},
}
# The risk score's named outcome is "window late share above one of the thresholds".
RISK_OUTCOMES = ("good_max", "doubtful_max", "forgetful_max")


class RulesError(ValueError):
    """The rules file is missing or malformed (message: file, key, what was expected)."""


@dataclass(frozen=True)
class Rules:
    """Category rules as read from the rules file; ``version`` is sha256(file)[:12]."""

    paid_statuses: tuple[str, ...]
    open_statuses: tuple[str, ...]
    excluded_statuses: tuple[str, ...]
    unknown_status: str  # "open" or "excluded": how a status listed nowhere is treated
    protest_or_derogatory_statuses: tuple[str, ...]
    event_known_after_days: int
    grace_days: int
    due_date_column: str
    min_matured_bills: int
    good_max: float
    doubtful_max: float
    forgetful_max: float
    version: str
    # [risk]: which threshold names the risk score's outcome, and the category's hysteresis margin.
    risk_outcome: str = "good_max"
    hysteresis_margin: float = 0.05
    source: str = ""

    @property
    def thresholds(self) -> tuple[float, float, float]:
        """Late-share upper bounds (good, doubtful, forgetful); above the last -> bad."""
        return (self.good_max, self.doubtful_max, self.forgetful_max)

    def sql_params(self) -> dict[str, object]:
        """Bind parameters shared by the feature and label queries."""
        return {
            "paid_statuses": list(self.paid_statuses),
            "open_statuses": list(self.open_statuses),
            "excluded_statuses": list(self.excluded_statuses),
            "unknown_excluded": self.unknown_status == "excluded",
            "event_statuses": list(self.protest_or_derogatory_statuses),
            "event_known_after_days": self.event_known_after_days,
            "grace_days": self.grace_days,
            "due_date_column": self.due_date_column,
            "min_matured_bills": self.min_matured_bills,
            "good_max": self.good_max,
            "doubtful_max": self.doubtful_max,
            "forgetful_max": self.forgetful_max,
        }


def category_for(n_matured: int, n_late: int, rules: Rules, *, min_bills: int | None = None) -> str:
    """The category the rules give to ``n_late`` late bills out of ``n_matured`` matured ones.

    ``min_bills`` overrides ``rules.min_matured_bills`` (labels use 1: any matured bill judges).
    Returns ``new`` below the minimum.  The SQL function ``payer_category``
    (migration 0007) is the same rule; tests hold one to the other.
    """
    minimum = rules.min_matured_bills if min_bills is None else min_bills
    if n_matured < max(minimum, 1):
        return "new"
    share = n_late / n_matured
    if share <= rules.good_max:
        return "good"
    if share <= rules.doubtful_max:
        return "doubtful"
    if share <= rules.forgetful_max:
        return "forgetful"
    return "bad"


def _fail(path: Path, key: str, expected: str, got: object) -> RulesError:
    return RulesError(f"{path}: [{key}] expected {expected}, got {got!r}")


def _status_list(path: Path, table: dict, section: str, key: str) -> tuple[str, ...]:
    value = table.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(path, f"{section}.{key}", "a list of status names", value)
    if len(set(value)) != len(value):
        raise _fail(path, f"{section}.{key}", "each status once", value)
    return tuple(value)


def _int(path: Path, table: dict, section: str, key: str, minimum: int) -> int:
    value = table.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(path, f"{section}.{key}", f"an integer >= {minimum}", value)
    return value


def _share(path: Path, table: dict, section: str, key: str) -> float:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1) or math.isnan(value):
        raise _fail(path, f"{section}.{key}", "a share in [0, 1)", value)
    return float(value)


def load_rules(path: Path | str = DEFAULT_RULES_FILE) -> Rules:
    """Read and check the rules file (callers pass ``settings.rules_file``); return frozen :class:`Rules`.

    Raises :class:`RulesError` with a one-line message naming the file and key
    when the file is missing, is not TOML, has an unknown or missing key, a
    status in two lists, thresholds out of order, or an unknown due-date column.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the rules file ({exc.strerror or exc})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: not valid TOML ({exc})") from exc

    for section, keys in _SCHEMA.items():
        table = data.get(section)
        if not isinstance(table, dict):
            raise RulesError(f"{path}: missing section [{section}]")
        unknown = set(table) - keys
        if unknown:
            raise RulesError(f"{path}: unknown key(s) in [{section}]: {', '.join(sorted(unknown))}")
        missing = keys - set(table)
        if missing:
            raise RulesError(f"{path}: missing key(s) in [{section}]: {', '.join(sorted(missing))}")
    extra = set(data) - set(_SCHEMA)
    if extra:
        raise RulesError(f"{path}: unknown section(s): {', '.join(sorted(extra))}")

    st, mt, th, rk = data["statuses"], data["maturity"], data["thresholds"], data["risk"]
    paid = _status_list(path, st, "statuses", "paid")
    open_ = _status_list(path, st, "statuses", "open")
    excluded = _status_list(path, st, "statuses", "excluded")
    events = _status_list(path, st, "statuses", "protest_or_derogatory")
    seen: dict[str, str] = {}
    for name, group in (("paid", paid), ("open", open_), ("excluded", excluded)):
        for status in group:
            if status in seen:
                raise RulesError(f"{path}: status {status!r} is in both statuses.{seen[status]} and statuses.{name}")
            seen[status] = name
    if not paid:
        raise _fail(path, "statuses.paid", "at least one status", paid)
    unknown_status = st["unknown_status"]
    if unknown_status not in ("open", "excluded"):
        raise _fail(path, "statuses.unknown_status", '"open" or "excluded"', unknown_status)
    due_col = mt["due_date_column"]
    if due_col not in DUE_DATE_COLUMNS:
        raise _fail(path, "maturity.due_date_column", " or ".join(f'"{c}"' for c in DUE_DATE_COLUMNS), due_col)
    good_max = _share(path, th, "thresholds", "good_max")
    doubtful_max = _share(path, th, "thresholds", "doubtful_max")
    forgetful_max = _share(path, th, "thresholds", "forgetful_max")
    if not good_max <= doubtful_max <= forgetful_max:
        raise RulesError(
            f"{path}: [thresholds] expected good_max <= doubtful_max <= forgetful_max, "
            f"got {good_max} / {doubtful_max} / {forgetful_max}"
        )
    risk_outcome = rk["outcome"]
    if risk_outcome not in RISK_OUTCOMES:
        raise _fail(path, "risk.outcome", " or ".join(f'"{c}"' for c in RISK_OUTCOMES), risk_outcome)
    return Rules(
        paid_statuses=paid,
        open_statuses=open_,
        excluded_statuses=excluded,
        unknown_status=unknown_status,
        protest_or_derogatory_statuses=events,
        event_known_after_days=_int(path, st, "statuses", "event_known_after_days", 0),
        grace_days=_int(path, mt, "maturity", "grace_days", 0),
        due_date_column=due_col,
        min_matured_bills=_int(path, mt, "maturity", "min_matured_bills", 1),
        good_max=good_max,
        doubtful_max=doubtful_max,
        forgetful_max=forgetful_max,
        version=hashlib.sha256(raw).hexdigest()[:12],
        risk_outcome=risk_outcome,
        hysteresis_margin=_share(path, rk, "risk", "hysteresis_margin"),
        source=str(path),
    )
