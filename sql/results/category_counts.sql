-- Customers per current category written for :as_of, most common first.
SELECT category, count(*) AS customers
FROM customer_categories
WHERE as_of_date = :as_of
GROUP BY category
ORDER BY count(*) DESC, category
