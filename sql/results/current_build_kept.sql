-- ... and the current rows of customers this run did not score stay (fate kept).
-- Column lists: payer_scoring/results.py results_sql().
INSERT INTO customer_categories_next ({columns}, as_of_date, model_version, scored_at, flow_run_id)
SELECT {c_columns}, c.as_of_date, c.model_version, c.scored_at, c.flow_run_id
FROM customer_categories c
WHERE NOT EXISTS (SELECT 1 FROM results_staging s WHERE s.company_id = c.company_id AND s.customer_id = c.customer_id)
