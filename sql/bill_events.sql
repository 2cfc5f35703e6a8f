-- Customers with a bill event between two as-of dates: a bill issued, paid or
-- matured in (:since, :as_of] (the hysteresis of the daily category:
-- models/risk_decision.py).  The bill rules are the SQL functions of
-- migration 0007, shared with sql/customer_features.sql.
--
--   issued  : :since <  issue_date_dte <= :as_of
--   paid    : paid as of :as_of but not as of :since (payer_bill_paid_on)
--   matured : matured at :as_of but not at :since (payer_bill_matured), for a
--             bill issued by :as_of
-- Only bills that count (payer_bill_counts).  One row per customer with at
-- least one event; customers without an event are absent.
--
-- Bind parameters: :since date, :as_of date and the rules' parameters
-- (payer_scoring.rules.Rules.sql_params).
WITH bill AS (
    SELECT
        p.company_id,
        p.customer_id,
        p.issue_date_dte > CAST(:since AS date) AND p.issue_date_dte <= CAST(:as_of AS date) AS issued,
        payer_bill_paid_on(p.payment_status, p.paid_at_dte, CAST(:paid_statuses AS text[]), CAST(:as_of AS date)) IS NOT NULL
            AND payer_bill_paid_on(p.payment_status, p.paid_at_dte, CAST(:paid_statuses AS text[]), CAST(:since AS date)) IS NULL
            AS paid,
        p.issue_date_dte <= CAST(:as_of AS date)
            AND payer_bill_matured(d.due + CAST(:grace_days AS integer), CAST(:as_of AS date))
            AND NOT payer_bill_matured(d.due + CAST(:grace_days AS integer), CAST(:since AS date))
            AS matured
    FROM payments p
    CROSS JOIN LATERAL (
        SELECT payer_bill_due(p.due_date_dte, p.original_due_date_dte, CAST(:due_date_column AS text)) AS due
    ) d
    WHERE payer_bill_counts(p.payment_status, CAST(:paid_statuses AS text[]), CAST(:open_statuses AS text[]),
                            CAST(:excluded_statuses AS text[]), CAST(:unknown_excluded AS boolean))
      AND (   (p.issue_date_dte > CAST(:since AS date) AND p.issue_date_dte <= CAST(:as_of AS date))
           OR (p.paid_at_dte > CAST(:since AS date) AND p.paid_at_dte <= CAST(:as_of AS date))
           OR (d.due + CAST(:grace_days AS integer) >= CAST(:since AS date)
               AND d.due + CAST(:grace_days AS integer) < CAST(:as_of AS date)))
)
SELECT
    company_id,
    customer_id,
    count(*) FILTER (WHERE issued)  AS n_issued,
    count(*) FILTER (WHERE paid)    AS n_paid,
    count(*) FILTER (WHERE matured) AS n_matured
FROM bill
WHERE issued OR paid OR matured
GROUP BY company_id, customer_id
ORDER BY company_id, customer_id
