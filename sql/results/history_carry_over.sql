-- A rerun for :as_of_date: staged rows whose content equals the stored row keep
-- the scored_at / flow_run_id of the run that first wrote them, so a rerun that
-- computes the same results leaves the tables identical.  rowcount = unchanged rows.
-- Column lists: payer_scoring/results.py results_sql().
UPDATE results_staging s
SET scored_at = h.scored_at, flow_run_id = h.flow_run_id
FROM customer_category_history h
WHERE h.as_of_date = :as_of_date
  AND h.company_id = s.company_id AND h.customer_id = s.customer_id
  AND ({h_columns}, h.model_version) IS NOT DISTINCT FROM ({s_columns}, s.model_version)
