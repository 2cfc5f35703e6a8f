-- One row per run of the weekly retrain flow (flows/weekly_retrain.py), written
-- whether or not a challenger was trained, so "why did (or didn't) we retrain
-- on date X?" is answered by a query.
--
-- feature_drift  : {"<feature>": {"psi": 0.31, "ks_statistic": 0.12,
--                   "ks_pvalue": 1e-9, "level": "major", "reference_mean": ..,
--                   "current_mean": ..}, ...}; level is stable (< 0.10),
--                   moderate (0.10-0.25) or major (>= 0.25), see tasks/drift.py.
-- category_shift : predicted-category shares of the champion on its reference
--                  sample vs on the current population, and their PSI.
-- performance    : realized vs holdout macro-F1 of predictions whose
--                  performance window has matured (null fields when none has).
-- triggers       : codes of the retrain triggers that fired (empty: none).
-- decision       : no_retrain | promoted | rejected | failed.
-- champion_metrics / challenger_metrics: both models on the same holdout
--                  ({"macro_f1", "log_loss", ...}); null when not evaluated.
-- policy         : the trigger and promotion thresholds in force for the run.

CREATE TABLE drift_reports (
    id                  bigserial   PRIMARY KEY,
    flow_run_id         text,
    as_of_date          date        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    champion_version    text,
    challenger_version  text,
    n_reference         integer     CHECK (n_reference >= 0),
    n_current           integer     CHECK (n_current >= 0),
    feature_drift       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    category_shift      jsonb,
    performance         jsonb,
    triggers            text[]      NOT NULL DEFAULT '{}',
    decision            text        NOT NULL CHECK (decision IN ('no_retrain', 'promoted', 'rejected', 'failed')),
    reason              text        NOT NULL,
    champion_metrics    jsonb,
    challenger_metrics  jsonb,
    policy              jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX drift_reports_as_of_idx ON drift_reports (as_of_date DESC, created_at DESC);
