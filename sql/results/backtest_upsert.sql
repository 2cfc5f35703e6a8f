-- One backtest row per (scoring date, horizon); a rerun replaces it
-- (payer_scoring/results.py write_backtest_report).
INSERT INTO backtest_reports AS b
    (as_of_date, horizon_days, model_version, outcome, n_scored, n_with_outcome, risk_auc, risk_brier, risk_ece,
     observed_auc, category_auc, category_macro_f1, observed_macro_f1, metrics, flow_run_id, created_at)
VALUES
    (:as_of_date, :horizon_days, :model_version, :outcome, :n_scored, :n_with_outcome, :risk_auc, :risk_brier, :risk_ece,
     :observed_auc, :category_auc, :category_macro_f1, :observed_macro_f1, CAST(:metrics AS jsonb), :flow_run_id, now())
ON CONFLICT (as_of_date, horizon_days) DO UPDATE
SET model_version = EXCLUDED.model_version,
    outcome = EXCLUDED.outcome,
    n_scored = EXCLUDED.n_scored,
    n_with_outcome = EXCLUDED.n_with_outcome,
    risk_auc = EXCLUDED.risk_auc,
    risk_brier = EXCLUDED.risk_brier,
    risk_ece = EXCLUDED.risk_ece,
    observed_auc = EXCLUDED.observed_auc,
    category_auc = EXCLUDED.category_auc,
    category_macro_f1 = EXCLUDED.category_macro_f1,
    observed_macro_f1 = EXCLUDED.observed_macro_f1,
    metrics = EXCLUDED.metrics,
    flow_run_id = EXCLUDED.flow_run_id,
    created_at = EXCLUDED.created_at
