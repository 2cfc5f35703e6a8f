-- Customers with a bill event between two as-of dates: a bill issued, paid or
-- matured in (:since, :as_of] (the hysteresis of the daily category:
-- models/risk_decision.py).
--
--   issued  : :since <  issue_date_dte <= :as_of
--   paid    : paid status AND :since < paid_at_dte <= :as_of
--   matured : matured at :as_of but not at :since, i.e.
--             :since <= due + grace < :as_of  (matured at D when due + grace < D,
--             the definition of sql/customer_features.sql)
-- Bills in an excluded status (and, when the rules exclude unknown statuses,
-- those) never count, as in the feature query.  One row per customer with at
-- least one event; customers without an event are absent.
--
-- Bind parameters: :since date, :as_of date and the rules' parameters
-- (payer_scoring.rules.Rules.sql_params).
SELECT
    p.company_id,
    p.customer_id,
    count(*) FILTER (WHERE p.issue_date_dte > CAST(:since AS date)
                       AND p.issue_date_dte <= CAST(:as_of AS date))                  AS n_issued,
    count(*) FILTER (WHERE p.payment_status = ANY (CAST(:paid_statuses AS text[]))
                       AND p.paid_at_dte > CAST(:since AS date)
                       AND p.paid_at_dte <= CAST(:as_of AS date))                     AS n_paid,
    count(*) FILTER (WHERE d.due + CAST(:grace_days AS integer) >= CAST(:since AS date)
                       AND d.due + CAST(:grace_days AS integer) <  CAST(:as_of AS date)
                       AND p.issue_date_dte <= CAST(:as_of AS date))                  AS n_matured
FROM payments p
CROSS JOIN LATERAL (
    SELECT CASE WHEN CAST(:due_date_column AS text) = 'original_due_date_dte'
                THEN COALESCE(p.original_due_date_dte, p.due_date_dte)
                ELSE p.due_date_dte END AS due
) d
WHERE NOT (p.payment_status = ANY (CAST(:excluded_statuses AS text[])))
  AND NOT (CAST(:unknown_excluded AS boolean)
           AND NOT (p.payment_status = ANY (CAST(:paid_statuses AS text[]) || CAST(:open_statuses AS text[]))))
  AND (   (p.issue_date_dte > CAST(:since AS date) AND p.issue_date_dte <= CAST(:as_of AS date))
       OR (p.paid_at_dte > CAST(:since AS date) AND p.paid_at_dte <= CAST(:as_of AS date)
           AND p.payment_status = ANY (CAST(:paid_statuses AS text[])))
       OR (d.due + CAST(:grace_days AS integer) >= CAST(:since AS date)
           AND d.due + CAST(:grace_days AS integer) <  CAST(:as_of AS date)
           AND p.issue_date_dte <= CAST(:as_of AS date)))
GROUP BY p.company_id, p.customer_id
ORDER BY p.company_id, p.customer_id
