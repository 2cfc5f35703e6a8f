-- Remove history rows of :as_of_date for customers this run did not score
-- (the rerun for a date replaces that date completely).
DELETE FROM customer_category_history h
WHERE h.as_of_date = :as_of_date
  AND NOT EXISTS (
      SELECT 1 FROM results_staging s
      WHERE s.company_id = h.company_id AND s.customer_id = h.customer_id
  )
