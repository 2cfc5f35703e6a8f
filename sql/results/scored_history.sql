-- What was published for every customer scored on :as_of_date (the backtest
-- compares it with the realized outcomes: models/risk_backtest.py).
SELECT company_id, customer_id, category, p_good, p_doubtful, p_forgetful, p_bad,
       observed_category, risk_score, model_version
FROM customer_category_history
WHERE as_of_date = :as_of_date
ORDER BY company_id, customer_id
