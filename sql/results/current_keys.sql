-- The partition's primary key, built once over the loaded rows (ATTACH adopts it
-- as the partition of customer_categories_pkey).
ALTER TABLE customer_categories_next ADD CONSTRAINT customer_categories_next_pkey PRIMARY KEY (company_id, customer_id)
