-- Rows of :as_of_date inserted by hand into the DEFAULT partition: replaced by
-- the date's own partition (ATTACH refuses while the default holds that date).
DELETE FROM customer_category_history_default WHERE as_of_date = :as_of_date
