-- Insert the staged rows as history for :as_of_date; a row that already exists
-- for that date is rewritten only when its content changed, so a rerun that
-- computes the same results leaves the table byte-identical.
INSERT INTO customer_category_history AS h
    (company_id, customer_id, category, p_good, p_doubtful, p_forgetful, p_bad,
     observed_category, as_of_date, model_version, scored_at, flow_run_id)
SELECT s.company_id, s.customer_id, s.category, s.p_good, s.p_doubtful, s.p_forgetful, s.p_bad,
       s.observed_category, :as_of_date, :model_version, :scored_at, :flow_run_id
FROM results_staging s
ORDER BY s.company_id, s.customer_id  -- key order: index pages are visited once, in sequence
ON CONFLICT (as_of_date, company_id, customer_id) DO UPDATE
SET category = EXCLUDED.category,
    p_good = EXCLUDED.p_good,
    p_doubtful = EXCLUDED.p_doubtful,
    p_forgetful = EXCLUDED.p_forgetful,
    p_bad = EXCLUDED.p_bad,
    observed_category = EXCLUDED.observed_category,
    model_version = EXCLUDED.model_version,
    scored_at = EXCLUDED.scored_at,
    flow_run_id = EXCLUDED.flow_run_id
WHERE (h.category, h.p_good, h.p_doubtful, h.p_forgetful, h.p_bad, h.observed_category, h.model_version)
      IS DISTINCT FROM
      (EXCLUDED.category, EXCLUDED.p_good, EXCLUDED.p_doubtful, EXCLUDED.p_forgetful, EXCLUDED.p_bad,
       EXCLUDED.observed_category, EXCLUDED.model_version)
