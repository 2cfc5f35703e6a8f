-- Added after the COPY (faster than maintaining it row by row); fails with a
-- unique violation naming the customer when the run scored one twice.
ALTER TABLE results_staging ADD CONSTRAINT results_staging_key PRIMARY KEY (company_id, customer_id)
