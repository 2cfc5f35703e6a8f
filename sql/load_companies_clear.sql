-- Empty the companies snapshot before a load writes the new one (same transaction).
DELETE FROM companies
