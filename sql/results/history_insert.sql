-- First write of :as_of_date (the daily case): a plain append, in key order.
INSERT INTO customer_category_history
    ({columns}, as_of_date, model_version, scored_at, flow_run_id)
SELECT {s_columns}, :as_of_date, :model_version, :scored_at, :flow_run_id
FROM results_staging s
ORDER BY s.company_id, s.customer_id
