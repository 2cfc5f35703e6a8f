-- Staged customers whose current row is for a newer as_of_date (kept as is).
SELECT count(*)
FROM results_staging s
JOIN customer_categories c ON c.company_id = s.company_id AND c.customer_id = s.customer_id
WHERE c.as_of_date > :as_of_date
