-- Issue 11: the risk score and the reason codes in the results tables and the
-- billing view; the backtest's reports.
--
-- risk_score: the calibrated probability of the named outcome of
--   config/rules.toml [risk] outcome over the horizon H (default: some bill
--   maturing in (T, T+H] paid late or left unpaid), 0-1.  NULL only on rows
--   written before this migration (by the old multiclass model).
-- reason_codes: up to 3 stable codes (models/risk_reasons.py REASONS), the
--   feature groups that raise the customer's risk most, largest first; empty
--   for `new` customers and for rows written before this migration.
-- reason_code_labels: the codes' pt-BR and English texts, a view over
--   constants like category_labels (a test holds it to REASONS).
-- The billing view gets the new columns at the end (its columns are a
-- contract: add, never rename or drop), the texts resolved in code order.

ALTER TABLE customer_categories
    ADD COLUMN risk_score   double precision CHECK (risk_score BETWEEN 0 AND 1),
    ADD COLUMN reason_codes text[] NOT NULL DEFAULT '{}';
ALTER TABLE customer_category_history
    ADD COLUMN risk_score   double precision CHECK (risk_score BETWEEN 0 AND 1),
    ADD COLUMN reason_codes text[] NOT NULL DEFAULT '{}';

CREATE VIEW reason_code_labels (code, text_pt_br, text_en, sort_order) AS
VALUES
    ('UNPAID_OVERDUE_BILLS', 'Boletos vencidos e não pagos', 'Unpaid overdue bills', 1),
    ('LATE_SHARE_90D_HIGH', 'Muitos atrasos nos últimos 90 dias', 'High share of late bills in the last 90 days', 2),
    ('RECENT_BILLS_LATE', 'Atraso nas cobranças mais recentes', 'The most recent bills were late', 3),
    ('LATE_SHARE_HIGH', 'Histórico com muitos pagamentos em atraso', 'High share of late bills in the history', 4),
    ('DAYS_PAST_DUE_HIGH', 'Muitos dias de atraso', 'Many days past due', 5),
    ('RECENT_LATE_PAYMENT', 'Atraso recente', 'A recent late payment', 6),
    ('PROTEST_OR_BUREAU_EVENTS', 'Protesto ou negativação registrados', 'Protest or credit-bureau events on record', 7),
    ('FEW_EARLY_PAYMENTS', 'Poucos pagamentos antecipados', 'Few bills paid before the due date', 8),
    ('COMPANY_LATE_SHARE_HIGH', 'Carteira da empresa com muitos atrasos', 'Customers of the same company often pay late', 9),
    ('SHORT_HISTORY', 'Histórico de pagamentos curto', 'Short payment history', 10),
    ('OPEN_BALANCE_HIGH', 'Muitas cobranças em aberto', 'Many open bills', 11),
    ('INACTIVITY', 'Sem pagamentos ou cobranças recentes', 'No recent payments or bills', 12),
    ('BILLING_PROFILE', 'Perfil de cobrança (valores, parcelas, meio de pagamento)', 'Billing profile (amounts, instalments, payment method)', 13);

CREATE OR REPLACE VIEW billing_customer_category AS
SELECT c.company_id,
       c.customer_id,
       c.category,
       l.category_label,
       c.p_good,
       c.p_doubtful,
       c.p_forgetful,
       c.p_bad,
       c.observed_category,
       c.as_of_date,
       c.model_version,
       c.risk_score,
       c.reason_codes,
       ARRAY(SELECT r.text_pt_br FROM unnest(c.reason_codes) WITH ORDINALITY AS u(code, n)
             JOIN reason_code_labels r ON r.code = u.code ORDER BY u.n) AS reason_texts_pt_br,
       ARRAY(SELECT r.text_en FROM unnest(c.reason_codes) WITH ORDINALITY AS u(code, n)
             JOIN reason_code_labels r ON r.code = u.code ORDER BY u.n) AS reason_texts_en
FROM customer_categories c
JOIN category_labels l ON l.category = c.category;

COMMENT ON VIEW billing_customer_category IS
    'Current payer category per customer for the billing system (payer-scoring): category, class probabilities, risk_score (calibrated probability of the named outcome over the horizon), up to 3 reason codes with pt-BR and English texts. Columns are a contract: add, never rename or drop.';
GRANT SELECT ON billing_customer_category TO billing_reader;

-- "bad payers of company X by risk": the key prefix company_id, then risk.
CREATE INDEX customer_categories_company_risk ON customer_categories (company_id, risk_score DESC);

-- The backtest (payer-scoring backtest, weekly retrain): for each past scoring
-- date T whose window (T, T+H] has matured, the realized outcomes of the
-- customers scored then against what was published (models/risk_backtest.py
-- scored_backtest): risk-score AUC, Brier, ECE, bad rate per category and
-- macro-F1 of the category, for the risk score and for the observed category.
-- One row per (as_of_date, horizon_days); a rerun replaces it.
CREATE TABLE backtest_reports (
    as_of_date      date        NOT NULL,
    horizon_days    integer     NOT NULL CHECK (horizon_days > 0),
    model_version   text,
    outcome         text        NOT NULL,
    n_scored        integer     NOT NULL,
    n_with_outcome  integer     NOT NULL,
    risk_auc        double precision,
    risk_brier      double precision,
    risk_ece        double precision,
    observed_auc    double precision,
    category_auc    double precision,
    category_macro_f1 double precision,
    observed_macro_f1 double precision,
    metrics         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    flow_run_id     text,
    PRIMARY KEY (as_of_date, horizon_days)
);
