-- How many current rows a company has (in one category, or all when :category is NULL).
SELECT count(*)
FROM customer_categories
WHERE company_id = CAST(:company_id AS text)
  AND (CAST(:category AS text) IS NULL OR category = CAST(:category AS text))
