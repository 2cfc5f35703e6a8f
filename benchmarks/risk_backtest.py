"""Backtest of the risk model (issue 11) on one database: time holdout, baselines, monotonicity, flips.

    .venv/bin/python benchmarks/risk_backtest.py --database NAME [--as-of DATE] [--cache DIR]
        [--kind hgb|logistic|both] [--flip-days 30] [--json OUT]

Steps (plain functions of ``models.risk_*``; this script only reads the
database and prints):

1. the snapshot plan of ``payer-scoring train`` (``models.training.plan_snapshots``:
   holdout = as-of - H, training snapshots every S days ending one horizon
   before it);
2. features (``sql/customer_features.sql``) and window labels
   (``sql/performance_labels.sql``) of every customer with a label at each
   snapshot, ``new`` customers included;
3. fits the chain (and the logistic challenger), tunes the decision rule on
   the calibration fold, fits the transition and multinomial-logistic
   baselines on the training snapshots (customers not ``new``), and reports
   :func:`models.risk_backtest.backtest` on the holdout;
4. monotonicity: every lateness feature of the holdout population moved the
   bad way, rows whose risk drops (target 0);
5. day-to-day flips on ``--flip-days`` consecutive as-of dates ending at the
   as-of date, with and without hysteresis (``sql/bill_events.sql``).

Settings (horizon, snapshot step, windows) come from the environment as for
every command (``PAYER_SCORING_HORIZON_DAYS=31`` for UCI).  ``--cache`` keeps
the labelled frames as pickles so a rerun skips the feature queries.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("risk_backtest")


def labelled_frame(engine, dates, rules, horizon_days) -> pd.DataFrame:
    """Features + window labels of every customer with a label at each date (new customers included)."""
    from payer_scoring.features import extract_features
    from payer_scoring.labels import compute_labels

    parts = []
    for t in dates:
        started = time.perf_counter()
        features = extract_features(engine, t, rules, horizon_days=horizon_days)
        labels = compute_labels(engine, t, horizon_days, rules)
        part = features.merge(labels, on=["company_id", "customer_id"], how="inner")
        part.insert(0, "snapshot", t)
        parts.append(part)
        log.info("snapshot %s: %d labelled (%.1fs)", t, len(part), time.perf_counter() - started)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def prepare(engine, as_of: date | None, rules, settings, cache: Path | None):
    """(plan, training frame, holdout frame), read from ``cache`` when present."""
    from models.training import data_bounds, plan_snapshots, resolve_as_of

    first, _ = data_bounds(engine)
    as_of = resolve_as_of(engine, as_of, settings)
    plan = plan_snapshots(as_of, first, settings.horizon_days, settings.snapshot_every_days,
                          settings.training_window_days, settings.min_history_days, settings.holdout_snapshots)
    path = cache / f"frames_{as_of}_{settings.horizon_days}_{rules.version}.pkl" if cache else None
    if path and path.exists():
        with path.open("rb") as fh:
            train, holdout = pickle.load(fh)
        return plan, train, holdout
    train = labelled_frame(engine, plan.train, rules, settings.horizon_days)
    holdout = labelled_frame(engine, plan.holdout, rules, settings.horizon_days)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump((train, holdout), fh)
    return plan, train, holdout


def run_backtest(engine, plan, train, holdout, rules, settings, *, kinds, flip_days: int, with_current: bool = True,
                 segmented: bool | None = None) -> dict:
    """Fit each kind, tune its rule, backtest on the holdout; monotonicity, reasons and flips for the chosen one."""
    from models.risk_backtest import backtest, flip_rates, monotonicity_violations, validation_metrics
    from models.risk_model import fit_risk_model, logistic_baseline
    from models.risk_scorer import tune_rule
    from models.risk_reasons import contributions, top_reasons

    outcome = rules.risk_outcome
    train_cat = train[train["n_matured"] >= rules.min_matured_bills]
    report: dict = {
        "as_of": plan.as_of, "horizon_days": settings.horizon_days, "holdout": plan.holdout,
        "training_snapshots": [plan.train[0], plan.train[-1], len(plan.train)],
        "n_train": len(train), "n_train_categorised": len(train_cat), "n_holdout": len(holdout),
        "train_label_counts": train["label"].value_counts().to_dict(),
        "holdout_label_counts": holdout["label"].value_counts().to_dict(),
        "kinds": {},
        "segmented": segmented,
    }
    started = time.perf_counter()
    logistic = logistic_baseline(train_cat)
    report["seconds_logistic_baseline"] = round(time.perf_counter() - started, 1)
    fitted = {}
    for kind in kinds:
        started = time.perf_counter()
        model = fit_risk_model(train, rules, kind=kind, segmented=segmented)
        seconds = time.perf_counter() - started
        rule = tune_rule(model, rules)
        fitted[kind] = (model, rule)
        report["kinds"][kind] = {
            "fit_seconds": round(seconds, 1),
            "n_fit": model.n_fit, "n_calibration": model.n_calibration,
            "calibration": model.calibration,
            "calibration_log_loss": model.calibration_log_loss,
            "calibration_snapshots": [str(model.calibration_snapshots[0]), str(model.calibration_snapshots[-1])],
            "validation": validation_metrics(model, outcome),
            "holdout": backtest(model, rule, holdout, train, rules, outcome, logistic=logistic),
        }
        log.info("%s: %s", kind, {k: report["kinds"][kind]["holdout"]["risk"][k] for k in ("auc", "brier", "ece")})
    # choice by the validation fold (never the holdout): lower Brier of the risk score, then higher AUC
    chosen = min(kinds, key=lambda k: (round(report["kinds"][k]["validation"]["brier"], 4), -report["kinds"][k]["validation"]["auc"]))
    report["chosen"] = chosen
    model, rule = fitted[chosen]
    k = ["good_max", "doubtful_max", "forgetful_max"].index(outcome)

    def risk_fn(frame):
        return model.cumulative(frame)[:, k]

    def category_fn(frame):
        return rule.decide(model.cumulative(frame))

    for kind, (m, r) in fitted.items():
        report["kinds"][kind]["monotonicity"] = monotonicity_violations(
            lambda f, m=m: m.cumulative(f)[:, k], lambda f, m=m, r=r: r.decide(m.cumulative(f)), holdout)
    if with_current:
        report["current_model"] = current_model_reference(train_cat, holdout, rules, outcome)
    # reason codes on the categorised holdout customers
    cat = holdout[holdout["n_matured"] >= rules.min_matured_bills]
    contrib = contributions(risk_fn, cat, model.reference)
    reasons = top_reasons(contrib)
    top = [r[0] if r else None for r in reasons]
    lowered = 0
    checked = 0
    for i, code in enumerate(top):
        if code is None:
            continue
        checked += 1
        lowered += bool(contrib.iloc[i][code] > 0)
    report["reasons"] = {
        "top_reason_counts": pd.Series([t for t in top if t]).value_counts().to_dict(),
        "customers_with_reason": checked,
        "top_reason_lowers_risk": lowered,
    }
    if flip_days:
        report["flips"] = daily_flips(engine, plan.as_of, flip_days, model, rule, rules, settings)
    return report


def current_model_reference(train_cat, holdout, rules, outcome) -> dict:
    """The current multiclass model (models/pipeline.py) on the same holdout: AUC of its expected class, log-loss, monotonicity."""
    from models.pipeline import fit_pipeline, predict_proba_frame
    from models.risk_backtest import auc, multiclass_log_loss, ORDINAL, one_more_late_bill
    from models.risk_model import LINKS, link_targets
    from payer_scoring.features import FEATURE_COLUMNS

    started = time.perf_counter()
    model = fit_pipeline(train_cat[FEATURE_COLUMNS], train_cat["label"])
    h = holdout[holdout["n_matured"] >= rules.min_matured_bills]
    proba = predict_proba_frame(model, h[FEATURE_COLUMNS]).to_numpy()
    y = link_targets(h["label"])[:, LINKS.index(outcome)]
    expected = proba @ np.arange(4)
    argmax = proba.argmax(axis=1)
    worse = one_more_late_bill(h)
    after = predict_proba_frame(model, worse[FEATURE_COLUMNS]).to_numpy() @ np.arange(4)
    return {
        "fit_seconds": round(time.perf_counter() - started, 1),
        "expected_class_auc": auc(y, expected),
        "argmax_category_auc": auc(y, argmax),
        "log_loss": multiclass_log_loss(h["label"], proba),
        "one_more_late_bill_expected_risk_lower": int((after < expected - 1e-12).sum()),
        "n": int(len(h)),
    }


def daily_flips(engine, as_of, n_days, model, rule, rules, settings) -> dict:
    """Categories on ``n_days`` + 1 consecutive as-of dates ending at ``as_of``; flip rates with and without hysteresis."""
    from models.risk_backtest import flip_rates
    from payer_scoring.bill_events import bill_events, mark_bill_events
    from payer_scoring.features import extract_features

    days = []
    for offset in range(n_days, -1, -1):
        d = as_of - timedelta(days=offset)
        f = extract_features(engine, d, rules, horizon_days=settings.horizon_days)
        q = model.cumulative(f)
        cat = np.where(f["n_matured"].to_numpy() < rules.min_matured_bills, "new", rule.decide(q)).astype(object)
        events = bill_events(engine, d - timedelta(days=1), d, rules)
        frame = pd.DataFrame({"company_id": f["company_id"], "customer_id": f["customer_id"], "category": cat,
                              "q1": q[:, 0], "q2": q[:, 1], "q3": q[:, 2]})
        frame["bill_event"] = mark_bill_events(frame, events).to_numpy()
        days.append(frame)
    out = flip_rates(days, rule.cutoffs, rules.hysteresis_margin)
    out["margin"] = rules.hysteresis_margin
    out["first_day"], out["last_day"] = as_of - timedelta(days=n_days), as_of
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="database name on the embedded server (PAYER_SCORING_DATABASE_NAME)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--kind", default="both", choices=["hgb", "logistic", "both"])
    parser.add_argument("--flip-days", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--no-segments", action="store_true", help="one chain for new and judged customers alike (also for the logistic chain)")
    parser.add_argument("--no-current", action="store_true", help="skip the current multiclass model's reference figures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ["PAYER_SCORING_DATABASE_NAME"] = args.database

    from payer_scoring.db import prepare_database
    from payer_scoring.rules import load_rules
    from payer_scoring.settings import Settings

    settings = Settings()
    rules = load_rules(settings.rules_file)
    engine = prepare_database(settings)
    started = time.perf_counter()
    plan, train, holdout = prepare(engine, args.as_of, rules, settings, args.cache)
    log.info("frames: %d training rows (%d snapshots), %d holdout rows (%.0fs)",
             len(train), train["snapshot"].nunique(), len(holdout), time.perf_counter() - started)
    if args.prepare_only:
        return 0

    report = run_backtest(engine, plan, train, holdout, rules, settings,
                          kinds=["hgb", "logistic"] if args.kind == "both" else [args.kind],
                          flip_days=args.flip_days, with_current=not args.no_current,
                          segmented=False if args.no_segments else None)
    report["database"] = args.database
    text = json.dumps(report, indent=2, default=str)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
