-- Every current row goes; rebuild_current_insert.sql writes them again from history
-- (same transaction: billing never sees the table empty).
DELETE FROM customer_categories
