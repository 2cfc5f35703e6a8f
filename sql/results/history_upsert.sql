-- Insert the staged rows as history for :as_of_date; a row that already exists
-- for that date is rewritten only when its content changed, so a rerun that
-- computes the same results leaves the table byte-identical.
INSERT INTO customer_category_history AS h
    ({columns}, as_of_date, model_version, scored_at, flow_run_id)
SELECT {s_columns}, :as_of_date, :model_version, :scored_at, :flow_run_id
FROM results_staging s
ORDER BY s.company_id, s.customer_id  -- key order: index pages are visited once, in sequence
ON CONFLICT (as_of_date, company_id, customer_id) DO UPDATE
SET {set_content},
    model_version = EXCLUDED.model_version,
    scored_at = EXCLUDED.scored_at,
    flow_run_id = EXCLUDED.flow_run_id
WHERE ({h_content}, h.model_version)
      IS DISTINCT FROM
      ({excluded_content}, EXCLUDED.model_version)
