-- Each customer's latest history row on or before :as_of_date becomes its current row,
-- with the scored_at / flow_run_id of the run that wrote it.
-- Column lists: payer_scoring/results.py results_sql().
INSERT INTO customer_categories_next
    ({columns}, as_of_date, model_version, scored_at, flow_run_id)
SELECT DISTINCT ON (h.company_id, h.customer_id)
       {h_columns}, h.as_of_date, h.model_version, h.scored_at, h.flow_run_id
FROM customer_category_history h
WHERE h.as_of_date <= :as_of_date
ORDER BY h.company_id, h.customer_id, h.as_of_date DESC
