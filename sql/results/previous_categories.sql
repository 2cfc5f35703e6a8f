-- The published category of every customer scored on :as_of_date (the
-- previous run, for the daily hysteresis: models/risk_decision.py).
SELECT company_id, customer_id, category, model_version
FROM customer_category_history
WHERE as_of_date = :as_of_date
ORDER BY company_id, customer_id
