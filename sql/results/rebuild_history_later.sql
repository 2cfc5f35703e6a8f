-- History rows written for an as-of later than :as_of_date (the bad run's rows):
-- removed by a rebuild, so "current = each customer's latest history row" holds again.
DELETE FROM customer_category_history
WHERE as_of_date > :as_of_date
