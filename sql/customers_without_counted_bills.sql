-- Customers with a bill issued on or before :as_of none of whose bills counts
-- at :as_of: every bill cancelled or voided (payer_bill_counts is false), or
-- quarantined in the scoring run :exclude_run_id.  sql/customer_features.sql
-- has no row for them; the daily run still gives each one a row (category
-- `new`), so billing never has to guess (DESIGN.md, issue 11).
--
-- Bind parameters: :as_of date, :exclude_run_id text|NULL, :partition_index
-- and :partition_count integer|NULL (only that partition's companies, as in
-- sql/customer_features.sql) and the rules' parameters
-- (payer_scoring.rules.Rules.sql_params).
SELECT
    p.company_id,
    p.customer_id,
    min(p.issue_date_dte) AS first_issued,
    max(p.issue_date_dte) AS last_issued
FROM payments p
LEFT JOIN quarantined_payments q
       ON q.flow_run_id = CAST(:exclude_run_id AS text)
      AND q.company_id = p.company_id
      AND q.payment_number = p.payment_number
      AND q.installment = p.installment
WHERE p.issue_date_dte <= CAST(:as_of AS date)
  AND (CAST(:partition_count AS integer) IS NULL
       OR payer_company_partition(p.company_id, CAST(:partition_count AS integer)) = CAST(:partition_index AS integer))
GROUP BY p.company_id, p.customer_id
HAVING NOT bool_or(payer_bill_counts(p.payment_status, CAST(:paid_statuses AS text[]), CAST(:open_statuses AS text[]),
                                     CAST(:excluded_statuses AS text[]), CAST(:unknown_excluded AS boolean))
                   AND q.company_id IS NULL)
ORDER BY p.company_id, p.customer_id
