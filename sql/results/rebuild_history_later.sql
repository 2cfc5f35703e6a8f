-- History rows written for an as-of later than :as_of_date (the bad run's rows) in the
-- DEFAULT partition; the later dates' own partitions are dropped whole (results.py).
DELETE FROM customer_category_history_default
WHERE as_of_date > :as_of_date
