-- Issue 14 #6: the partition of a daily run's customers on Dask, one owner.
--
-- A partitioned run (settings.task_runner = dask) splits the customers by their
-- COMPANY: partition = abs(hashtext(company_id)) modulo the partition count.
-- Splitting by company, not by customer, lets each partition push the filter
-- into the feature query's first scan (sql/customer_features.sql, `bill`) and
-- still compute the company aggregates (company_late_share,
-- company_n_customers: windows over all of a company's customers) exactly as
-- the single-process run does, because a company's customers are all in one
-- partition.  The cost: partitions are as uneven as the companies' sizes (one
-- client holding most customers makes one partition hold most of the work).
-- hashtext is PostgreSQL's stable internal text hash (same value on every
-- server of the same major version), so a customer's partition is the same in
-- every query of a run.
CREATE FUNCTION payer_company_partition(company_id text, partition_count integer)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CAST(mod(abs(CAST(hashtext(company_id) AS bigint)), partition_count) AS integer)
$$;
