-- One customer's current category as billing reads it (the billing view).
SELECT *
FROM billing_customer_category
WHERE company_id = :company_id
  AND customer_id = :customer_id
