-- Remove current rows written for :as_of_date for customers this run did not
-- score, so a rerun for the same date leaves exactly this run's customers.
DELETE FROM customer_categories c
WHERE c.as_of_date = :as_of_date
  AND NOT EXISTS (
      SELECT 1 FROM results_staging s
      WHERE s.company_id = c.company_id AND s.customer_id = c.customer_id
  )
