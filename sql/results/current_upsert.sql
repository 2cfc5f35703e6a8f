-- Make the staged rows the current category, except where the stored row is
-- for a newer as_of_date (a backfill never overwrites a newer category).
-- Unchanged rows are not rewritten (idempotent rerun, no dead tuples).
INSERT INTO customer_categories AS c
    (company_id, customer_id, category, p_good, p_doubtful, p_forgetful, p_bad,
     observed_category, as_of_date, model_version, scored_at, flow_run_id)
SELECT s.company_id, s.customer_id, s.category, s.p_good, s.p_doubtful, s.p_forgetful, s.p_bad,
       s.observed_category, :as_of_date, :model_version, :scored_at, :flow_run_id
FROM results_staging s
ORDER BY s.company_id, s.customer_id  -- key order: index pages are visited once, in sequence
ON CONFLICT (company_id, customer_id) DO UPDATE
SET category = EXCLUDED.category,
    p_good = EXCLUDED.p_good,
    p_doubtful = EXCLUDED.p_doubtful,
    p_forgetful = EXCLUDED.p_forgetful,
    p_bad = EXCLUDED.p_bad,
    observed_category = EXCLUDED.observed_category,
    as_of_date = EXCLUDED.as_of_date,
    model_version = EXCLUDED.model_version,
    scored_at = EXCLUDED.scored_at,
    flow_run_id = EXCLUDED.flow_run_id
WHERE c.as_of_date <= EXCLUDED.as_of_date
  AND (c.category, c.p_good, c.p_doubtful, c.p_forgetful, c.p_bad, c.observed_category,
       c.as_of_date, c.model_version)
      IS DISTINCT FROM
      (EXCLUDED.category, EXCLUDED.p_good, EXCLUDED.p_doubtful, EXCLUDED.p_forgetful, EXCLUDED.p_bad,
       EXCLUDED.observed_category, EXCLUDED.as_of_date, EXCLUDED.model_version)
