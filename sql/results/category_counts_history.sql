-- Customers per category written to the history for one scoring date
-- (the primary key (as_of_date, company_id, customer_id) serves the filter).
SELECT category, count(*) AS customers
FROM customer_category_history
WHERE as_of_date = :as_of
GROUP BY category
