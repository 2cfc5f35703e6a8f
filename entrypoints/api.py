"""The HTTP service: current categories from the results tables, and on-demand scoring of one payment.

``payer-scoring api`` (and ``make api``) serve :func:`create_app`; README
"HTTP service" documents the endpoints.  The service is a thin entry point:
reads go through :mod:`payer_scoring.results`, scoring through the daily
batch's own feature query (:func:`payer_scoring.features.extract_customer_features`)
and the same champion loader and predictor (:mod:`models.registry`,
:mod:`models.predict`).  It adds routing, validation and auth, nothing else.

* Ids travel as URL path segments, exactly as stored (the export's
  space-separated hex, spaces URL-encoded as ``%20``):
  ``/v1/companies/83%200b%20.../customers/02%2060%20...``.  They must be 1-200
  characters without control characters (else 422); anything else reaches
  PostgreSQL only as a bind parameter.
* Every ``/v1`` route needs an ``X-API-Key`` header whose sha256 is one of
  ``settings.api_keys_sha256`` (401 without one, 403 with a wrong one);
  ``/health`` and ``/ready`` are open for probes.
* Request bodies above ``settings.api_max_body_bytes`` get 413 before they are
  read whole; every error is a JSON object ``{"error": "<one line>", ...}``.
* The service connects as the read-only role ``api_reader`` (migration 0010)
  and refuses to start as a role that can write ``payments`` or the results.
* The champion is checked against the registry at most every
  ``settings.api_champion_check_seconds`` and reloaded (sha256-verified) when
  the weekly flow promoted another one; requests keep being served meanwhile.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from datetime import date, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy.engine import Engine, make_url
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.predict import predict_categories
from models.registry import Champion, RegistryError, champion_version, load_champion
from payer_scoring import results
from payer_scoring.db import resolve_database_url
from payer_scoring.features import EXTRA_BILL_COLUMNS, FEATURE_COLUMNS, extract_customer_features
from payer_scoring.rules import CLASSES, load_rules
from payer_scoring.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_ROLE = "api_reader"
PAGE_LIMIT_MAX = 500
CATEGORY_LABELS = {  # the category_labels view of migration 0005 (checked by tests/integration/test_api.py)
    "new": "Novos Pagadores",
    "good": "Bons Pagadores",
    "doubtful": "Pagadores Duvidosos",
    "forgetful": "Pagadores Esquecidos",
    "bad": "Maus Pagadores",
}
Category = Literal["new", "good", "doubtful", "forgetful", "bad"]
# 1-200 characters, no control characters (a NUL byte would be a PostgreSQL error, not a lookup).
_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"
IdPath = Annotated[str, Path(pattern=_ID_PATTERN, description="As stored: the export's space-separated hex, URL-encoded (%20).")]


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------- request / response models
def _empty_is_none(value: Any) -> Any:
    """The export writes a missing value as an empty string; JSON may use null.  Both mean missing."""
    return None if isinstance(value, str) and value.strip() == "" else value


_Opt = BeforeValidator(_empty_is_none)
OptDate = Annotated[date | None, _Opt]
OptDateTime = Annotated[datetime | None, _Opt]
OptText = Annotated[str | None, _Opt]
OptBool = Annotated[bool | None, _Opt]
Money = Annotated[float, Field(allow_inf_nan=False)]
OptMoney = Annotated[float | None, _Opt, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=_ID_PATTERN)]


class Payment(BaseModel):
    """One bill in the payments export layout: exactly the 39 fields of shared/data/examples/payment.json.

    Every field must be present (null or "" for a missing value where the export
    allows one); unknown fields are refused.  Dates are YYYY-MM-DD, timestamps
    ``YYYY-MM-DD HH:MM:SS[.fff]``, amounts BRL, ``discount_before_payment_due_date``
    epoch seconds (0 = none), ``installment`` ``k/n``.
    """

    model_config = ConfigDict(extra="forbid")

    company_id: Text
    company_name: OptText
    company_document: OptText
    company_trade_name: OptText
    customer_id: Text
    customer_name: OptText
    customer_trade_name: OptText
    parent_type: OptText
    parent_id: OptText
    payment_number: Text
    issue_date_dte: date
    original_due_date_dte: OptDate
    due_date_dte: OptDate
    paid_at_dte: OptDate
    issue_at_tsmp: OptDateTime
    original_due_date_tsmp: OptDateTime
    due_date_tsmp: OptDateTime
    paid_at_tsmp: OptDateTime
    payment_method: OptText
    payment_status: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
    paid_amount: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    billing_amount: Annotated[float, Field(ge=0, lt=1e14, allow_inf_nan=False)]
    payment_amount: OptMoney
    installment: Annotated[str, Field(pattern=r"^[0-9]{1,6}/[0-9]{1,6}$")]
    payment_provider: OptText
    discount_before_payment: OptMoney
    discount_before_payment_due_date: Annotated[int | None, _Opt, Field(ge=0)]
    description: OptText
    qrcode_number: OptText
    os_code: OptText
    os_identifier: OptText
    by_mail: OptBool
    by_whatsapp: OptBool
    fees: OptMoney
    fine: OptMoney
    paid_at: OptDateTime
    paid_method: OptText
    manual: OptText
    billing_number: OptText

    def latest_date(self) -> date:
        """The latest of the bill's dates (issue, due, original due, paid): the default as-of of a prediction."""
        days = [self.issue_date_dte, self.original_due_date_dte, self.due_date_dte, self.paid_at_dte]
        return max(d for d in days if d is not None)


class CustomerCategory(BaseModel):
    """A customer's current row in the results (the billing view), as written by the last daily run."""

    company_id: str
    customer_id: str
    category: Category
    category_label: str
    p_good: float
    p_doubtful: float
    p_forgetful: float
    p_bad: float
    observed_category: Category | None
    as_of_date: date
    model_version: str
    risk_score: float | None = Field(default=None, description="Calibrated probability (0-1) of the named outcome over the horizon (README \"Risk score, categories and reasons\"); null on rows written by a model before it.")
    reason_codes: list[str] | None = Field(default=None, description="Up to 3 stable reason codes, strongest first.")
    reason_texts_pt_br: list[str] | None = Field(default=None, description="The reason codes' pt-BR texts, same order.")
    reason_texts_en: list[str] | None = Field(default=None, description="The reason codes' English texts, same order.")


class CustomerPage(BaseModel):
    """One page of a company's customers, riskiest first."""

    company_id: str
    category: Category | None
    total: int = Field(description="Rows matching the filter over all pages.")
    limit: int
    offset: int
    items: list[CustomerCategory]


class Score(BaseModel):
    """An on-demand score: the daily batch's features and champion for one customer at ``as_of_date``."""

    company_id: str
    customer_id: str
    as_of_date: date
    category: Category
    category_label: str
    p_good: float
    p_doubtful: float
    p_forgetful: float
    p_bad: float
    observed_category: Category
    n_matured: int
    model_version: str
    risk_score: float | None = Field(default=None, description="Calibrated probability (0-1) of the named outcome over the horizon.")
    reason_codes: list[str] | None = Field(default=None, description="Up to 3 stable reason codes, strongest first (none for `new` customers).")
    features: dict[str, float] | None = Field(default=None, description="The model inputs (with ?include_features=true).")


# ---------------------------------------------------------------- champion
class ChampionHolder:
    """The loaded champion, reloaded when the registry names another one (checked at most every ``check_seconds``)."""

    def __init__(self, engine: Engine, store, check_seconds: float) -> None:
        self._engine = engine
        self._store = store
        self._check_seconds = check_seconds
        self._lock = threading.Lock()
        self._champion: Champion | None = None
        self._checked_at = float("-inf")
        self.error: str | None = None

    def get(self) -> Champion:
        """The current champion; raises :class:`ApiError` 503 when none can be loaded."""
        if time.monotonic() - self._checked_at >= self._check_seconds:
            self.refresh()
        if self._champion is None:
            raise ApiError(503, f"no champion model loaded: {self.error}")
        return self._champion

    def refresh(self) -> None:
        """Ask the registry for the champion's version; load it (sha256-checked) when it changed."""
        with self._lock:
            if time.monotonic() - self._checked_at < self._check_seconds and self._champion is not None:
                return  # another thread just checked
            try:
                version = champion_version(self._engine)
                if version is None:
                    self._champion, self.error = None, "the registry has no champion (run `payer-scoring train`)"
                elif self._champion is None or self._champion.version != version:
                    loaded = load_champion(self._engine, store=self._store)
                    log.info("champion %s loaded (was %s)", loaded.version, self._champion and self._champion.version)
                    self._champion, self.error = loaded, None
            except RegistryError as exc:  # unreadable or tampered artifact: keep serving the previous one
                self.error = str(exc)
                log.error("champion reload failed: %s", exc)
            except sa.exc.OperationalError as exc:
                self.error = f"database unreachable: {str(exc.orig or exc).strip().splitlines()[0]}"
                log.error("champion check failed: %s", self.error)
            self._checked_at = time.monotonic()

    @property
    def version(self) -> str | None:
        return self._champion.version if self._champion is not None else None


# ---------------------------------------------------------------- wiring
def api_database_url(settings: Settings) -> str:
    """The URL the service connects with: ``api_database_url``, else the configured server as role ``api_reader``."""
    if settings.api_database_url:
        from payer_scoring.db import _to_sqlalchemy_url

        return _to_sqlalchemy_url(settings.api_database_url)
    url = make_url(resolve_database_url(settings)).set(username=API_ROLE, password=None)
    return url.render_as_string(hide_password=False)


def api_engine(settings: Settings) -> Engine:
    """A pooled engine for the service's read-only role.

    Autocommit: every read is one statement, so no BEGIN and no ROLLBACK on
    return to the pool (two of three round trips per request; the profile
    showed the rollback alone at 5 % of a read).  Readers that need one
    snapshot for two statements ask for REPEATABLE READ on their connection.
    No pre-ping: a dead connection fails one request with 503.
    """
    return sa.create_engine(
        api_database_url(settings), isolation_level="AUTOCOMMIT",
        pool_size=8, max_overflow=8, pool_recycle=1800, pool_timeout=5,
    )


def check_read_only(engine: Engine) -> str:
    """Return the service's role name; raise RuntimeError when it may write payments or the results."""
    with engine.connect() as conn:
        role, writes = conn.execute(
            sa.text(
                "SELECT current_user, "
                "has_table_privilege('payments', 'INSERT,UPDATE,DELETE,TRUNCATE') "
                "OR has_table_privilege('customer_categories', 'INSERT,UPDATE,DELETE,TRUNCATE')"
            )
        ).one()
    if writes:
        raise RuntimeError(
            f"the HTTP service connects as role {role!r}, which can write payments or customer_categories; "
            f"set PAYER_SCORING_API_DATABASE_URL to the read-only role {API_ROLE} (migration 0010)"
        )
    return role


def _require_key(hashes: frozenset[str]):
    # async: pure CPU (one sha256), so it runs on the event loop instead of
    # taking a hop through the thread pool (the endpoints, which wait on the
    # database, stay in the pool so a slow query never blocks /health).
    async def check(x_api_key: Annotated[str | None, Header(description="API key (its sha256 is configured in PAYER_SCORING_API_KEYS_SHA256).")] = None) -> None:
        if not x_api_key:
            raise ApiError(401, "missing X-API-Key header")
        digest = hashlib.sha256(x_api_key.encode("utf-8", "surrogateescape")).hexdigest()
        if not any(hmac.compare_digest(digest, h) for h in hashes):
            raise ApiError(403, "X-API-Key is not valid")

    return check


class BodySizeLimit:
    """ASGI middleware: 413 for a body above ``max_bytes``, by its Content-Length or, when streamed, by counting.

    A streamed (chunked) body is read here up to ``max_bytes`` + 1 bytes before
    the app sees it and then handed on whole: the cap is small, and an
    exception raised while FastAPI reads the body would become a 400.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                return await _send_error(send, 400, "Content-Length is not a number")
            if too_big:
                return await _send_error(send, 413, f"request body above {self.max_bytes} bytes")
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _send_error(send, 413, f"request body above {self.max_bytes} bytes")
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send, status: int, message: str) -> None:
    response = JSONResponse({"error": message}, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field and what was expected (400 when the body is not JSON at all)."""
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where, field = (loc[0], ".".join(loc[1:])) if loc else ("request", "")
        errors.append({"location": where, "field": field, "expected": err.get("msg", ""), "type": err.get("type")})
    if any(e["type"] == "json_invalid" for e in errors):
        return JSONResponse({"error": "request body is not valid JSON", "errors": errors}, status_code=400)
    first = errors[0] if errors else {"location": "request", "field": "", "expected": "valid input"}
    if first["location"] == "body" and not first["field"]:
        message = f"request body: expected a JSON object with the payment's fields, sent as Content-Type: application/json ({first['expected']})"
    else:
        message = f"{first['location']} field {first['field']}: {first['expected']}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return JSONResponse({"error": message, "errors": errors}, status_code=422)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """Build the service for ``settings`` (read once by the caller); ``engine``: the read-only role's engine.

    Raises RuntimeError when no API key hash is configured or the role can
    write, ``RulesError`` for a bad rules file.  The champion is loaded
    lazily: a missing one makes ``/ready`` answer 503, not the start fail.
    """
    hashes = settings.api_key_hashes()
    if not hashes:
        raise RuntimeError("no API key configured: set PAYER_SCORING_API_KEYS_SHA256 (sha256 hex of each key, comma-separated)")
    engine = engine or api_engine(settings)
    role = check_read_only(engine)
    rules = load_rules(settings.rules_file)
    holder = ChampionHolder(engine, settings.model_store, settings.api_champion_check_seconds)
    holder.refresh()
    horizon_days = settings.horizon_days
    threads = settings.model_threads
    today = settings.today

    app = FastAPI(
        title="payer-scoring",
        version="1",
        summary="Payer categories of a billing platform's customers: current (daily run) and on demand.",
    )
    app.state.engine = engine
    app.state.champion = holder
    app.state.role = role
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(sa.exc.OperationalError)
    def _database_down(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        log.error("database error: %s", exc)
        return JSONResponse({"error": "database unavailable"}, status_code=503)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (logged by the service)"}, status_code=500)

    auth = [Depends(_require_key(hashes))]

    @app.get("/health", tags=["probes"])
    def health() -> dict:
        """The process is up (liveness)."""
        return {"status": "ok"}

    @app.get("/ready", tags=["probes"])
    def ready() -> JSONResponse:
        """Database reachable as the read-only role and a champion loaded with its sha256 verified (readiness)."""
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError:
            return JSONResponse({"status": "not ready", "error": "database unreachable"}, status_code=503)
        try:
            version = holder.get().version
        except ApiError as exc:
            return JSONResponse({"status": "not ready", "error": exc.message}, status_code=503)
        return JSONResponse({"status": "ready", "role": role, "champion": version})

    @app.get("/v1/companies/{company_id}/customers/{customer_id}", response_model=CustomerCategory,
             tags=["current category"], dependencies=auth, responses={404: {"description": "Unknown customer"}})
    def current_category(company_id: IdPath, customer_id: IdPath) -> dict:
        """The customer's current category as the last daily run wrote it (the billing view's row)."""
        row = results.read_customer_category(engine, company_id, customer_id)
        if row is None:
            raise ApiError(404, "no current category for this company_id and customer_id")
        return row

    @app.get("/v1/companies/{company_id}/customers", response_model=CustomerPage, tags=["current category"], dependencies=auth)
    def company_customers(
        company_id: IdPath,
        category: Annotated[Category | None, Query(description="Only this category.")] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict:
        """A company's customers riskiest first (risk score, then p_bad, descending), one page at a time."""
        total, rows = results.read_company_customers(engine, company_id, category=category, limit=limit, offset=offset)
        return {"company_id": company_id, "category": category, "total": total, "limit": limit, "offset": offset, "items": rows}

    def _score(company_id: str, customer_id: str, as_of: date, extra_bill: dict | None, include_features: bool) -> dict:
        if as_of > today():
            raise ApiError(422, f"as_of {as_of}: a date in the future cannot be scored (today is {today()})")
        champion = holder.get()
        features = extract_customer_features(
            engine, as_of, rules, company_id=company_id, customer_id=customer_id,
            horizon_days=horizon_days, extra_bill=extra_bill,
        )
        if features.empty:
            raise ApiError(
                404 if extra_bill is None else 422,
                f"the customer has no counted bill issued on or before {as_of} "
                "(bills issued later and excluded statuses such as cancelled do not count)",
            )
        row = predict_categories(champion, features, rules, threads=threads).iloc[0]
        out = {
            "company_id": company_id,
            "customer_id": customer_id,
            "as_of_date": as_of,
            "category": row["category"],
            "category_label": CATEGORY_LABELS[row["category"]],
            **{f"p_{c}": float(row[f"p_{c}"]) for c in CLASSES},
            "observed_category": row["observed_category"],
            "n_matured": int(row["n_matured"]),
            "model_version": champion.version,
            "risk_score": float(row["risk_score"]) if "risk_score" in row.index else None,
            "reason_codes": [str(c) for c in row["reason_codes"]] if "reason_codes" in row.index else None,
        }
        if include_features:
            out["features"] = {c: float(features.iloc[0][c]) for c in FEATURE_COLUMNS}
        return out

    @app.get("/v1/companies/{company_id}/customers/{customer_id}/score", response_model=Score,
             response_model_exclude_none=True, tags=["on demand"], dependencies=auth)
    def score_now(
        company_id: IdPath,
        customer_id: IdPath,
        as_of: Annotated[date | None, Query(description="Default: today in PAYER_SCORING_TIMEZONE.")] = None,
        include_features: bool = False,
    ) -> dict:
        """The category the daily batch would compute for this customer at ``as_of`` (computed now, nothing written)."""
        return _score(company_id, customer_id, as_of or today(), None, include_features)

    @app.post("/v1/customer/predict", response_model=Score, response_model_exclude_none=True,
              tags=["on demand"], dependencies=auth)
    def predict(
        payment: Payment,
        as_of: Annotated[date | None, Query(description="Default: the payment's latest date, capped at today.")] = None,
        include_features: bool = False,
    ) -> dict:
        """The category the customer would get with this payment added to their history (nothing is written).

        A stored bill with the same key (company_id, payment_number,
        installment) is replaced by this one, as a load would upsert it.  A
        customer unknown to the database is scored on this payment alone.
        """
        when = as_of or min(payment.latest_date(), today())
        extra = payment.model_dump(include=set(EXTRA_BILL_COLUMNS))
        return _score(payment.company_id, payment.customer_id, when, extra, include_features)

    return app


def app_from_environment() -> FastAPI:
    """Uvicorn factory (``--workers`` > 1 imports the app by name): the settings from the environment, read once."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(get_settings())
