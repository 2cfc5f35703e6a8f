-- Built after the COPY (one sorted build, faster than maintaining it row by
-- row); fails with a unique violation naming results_staging_key when the run
-- scored a customer twice.  Becomes the primary key of the date's partition.
ALTER TABLE results_staging ADD CONSTRAINT results_staging_key PRIMARY KEY (as_of_date, company_id, customer_id)
