-- The daily case of current_build.sql, when every current row is for an older
-- as-of than the run's (so no customer is kept_newer, same or removed): the
-- staged rows all become current rows (fate written) ...
-- Column lists: payer_scoring/results.py results_sql().
INSERT INTO customer_categories_next ({columns}, as_of_date, model_version, scored_at, flow_run_id)
SELECT {s_columns}, s.as_of_date, s.model_version, s.scored_at, s.flow_run_id
FROM results_staging s
