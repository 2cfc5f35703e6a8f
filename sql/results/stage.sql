-- Staging table of one write: the rows of one as-of, shaped like a partition of
-- customer_category_history (same columns, NOT NULL and CHECK constraints, so it
-- can be attached as that date's partition without a copy).  Created inside the
-- write transaction by the in-process run (gone if the transaction aborts), or
-- committed under a per-run name that the Dask partitions COPY into and the
-- final transaction renames to results_staging (payer_scoring/results.py).
-- {staging}: the (quoted) table name, chosen by results.py.
CREATE TABLE {staging} (LIKE customer_category_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
