-- Staging table for one write: dropped at commit, never WAL-logged.
-- Columns: payer_scoring/results.py RESULT_COLUMNS with their types.
CREATE TEMP TABLE results_staging ({staging_columns}) ON COMMIT DROP
