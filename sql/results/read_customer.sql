-- One customer's current category as billing reads it (the billing view).
-- {read_columns}: payer_scoring.results.CUSTOMER_READ_COLUMNS.
SELECT {read_columns}
FROM billing_customer_category
WHERE company_id = CAST(:company_id AS text)
  AND customer_id = CAST(:customer_id AS text)
