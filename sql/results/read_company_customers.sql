-- One page of a company's current categories, riskiest first (the HTTP service's list).
-- {read_columns}: payer_scoring.results.CUSTOMER_READ_COLUMNS; {risk_order}: RISK_ORDER
-- (both identifier lists fixed in that module).  Values are bind parameters:
-- :company_id text, :category text|NULL (NULL: every category), :limit and :offset int.
-- customer_id ends the order so pages never overlap or skip a row.
SELECT {read_columns}
FROM billing_customer_category
WHERE company_id = CAST(:company_id AS text)
  AND (CAST(:category AS text) IS NULL OR category = CAST(:category AS text))
ORDER BY {risk_order}, customer_id
LIMIT CAST(:limit AS integer) OFFSET CAST(:offset AS integer)
