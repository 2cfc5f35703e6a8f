-- First write of :as_of_date (the daily case): a plain append, in key order.
INSERT INTO customer_category_history
    (company_id, customer_id, category, p_good, p_doubtful, p_forgetful, p_bad,
     observed_category, as_of_date, model_version, scored_at, flow_run_id)
SELECT s.company_id, s.customer_id, s.category, s.p_good, s.p_doubtful, s.p_forgetful, s.p_bad,
       s.observed_category, :as_of_date, :model_version, :scored_at, :flow_run_id
FROM results_staging s
ORDER BY s.company_id, s.customer_id
