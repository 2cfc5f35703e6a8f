-- Customers per category written to the history for each of the scoring dates :days
-- (the primary key (as_of_date, company_id, customer_id) serves the filter).
SELECT as_of_date, category, count(*) AS customers
FROM customer_category_history
WHERE as_of_date = ANY(:days)
GROUP BY as_of_date, category
