-- Make the staged rows the current category, except where the stored row is
-- for a newer as_of_date (a backfill never overwrites a newer category).
-- Unchanged rows are not rewritten (idempotent rerun, no dead tuples).
-- {columns}, {content}, ...: payer_scoring/results.py column lists.
INSERT INTO customer_categories AS c
    ({columns}, as_of_date, model_version, scored_at, flow_run_id)
SELECT {s_columns}, :as_of_date, :model_version, :scored_at, :flow_run_id
FROM results_staging s
ORDER BY s.company_id, s.customer_id  -- key order: index pages are visited once, in sequence
ON CONFLICT (company_id, customer_id) DO UPDATE
SET {set_content},
    as_of_date = EXCLUDED.as_of_date,
    model_version = EXCLUDED.model_version,
    scored_at = EXCLUDED.scored_at,
    flow_run_id = EXCLUDED.flow_run_id
WHERE c.as_of_date <= EXCLUDED.as_of_date
  AND ({c_content}, c.as_of_date, c.model_version)
      IS DISTINCT FROM
      ({excluded_content}, EXCLUDED.as_of_date, EXCLUDED.model_version)
