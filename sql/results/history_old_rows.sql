-- Rows already stored for :as_of_date (a rerun; whatever partition holds them):
-- how many, how many of those customers this run scored again, and how many of
-- those with exactly the same content (a rerun that changes nothing keeps them).
-- Column lists: payer_scoring/results.py results_sql().
SELECT count(*) AS old_rows,
       count(s.customer_id) AS rescored,
       count(*) FILTER (WHERE s.customer_id IS NOT NULL
                          AND ({h_columns}, h.model_version) IS NOT DISTINCT FROM ({s_columns}, s.model_version)) AS unchanged
FROM customer_category_history h
LEFT JOIN results_staging s ON s.company_id = h.company_id AND s.customer_id = h.customer_id
WHERE h.as_of_date = :as_of_date
