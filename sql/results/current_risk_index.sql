-- The partition's index of customer_categories_company_risk (migration 0008),
-- built once over the loaded rows; ATTACH adopts it.
CREATE INDEX customer_categories_next_company_risk ON customer_categories_next (company_id, risk_score DESC)
