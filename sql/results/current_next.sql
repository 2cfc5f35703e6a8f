-- The next current rows are built into a new table shaped like the partition.
CREATE TABLE customer_categories_next (LIKE customer_categories INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
