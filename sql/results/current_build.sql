-- The next current table = today's current rows merged with the staged rows of
-- :as_of_date, in one pass (a full join on the key).  Each customer's fate:
--   written     staged, and no current row or one for an older or the same as-of
--               whose content differs: the staged row (this run's scored_at / flow_run_id);
--   same        staged, current row of the same content, as-of and model: kept as is
--               (idempotent rerun: even scored_at / flow_run_id stay);
--   kept_newer  staged, but the current row is for a newer as-of: kept (newest wins);
--   kept        not staged, current row of another as-of: kept (its as_of_date says how old);
--   removed     not staged, current row of :as_of_date (a rerun replaces that date): dropped.
-- Returns the count of each fate.  Column lists: payer_scoring/results.py results_sql().
WITH j AS MATERIALIZED (
    SELECT f.fate,
           {pick_content},
           CASE WHEN f.fate IN ('written', 'same') THEN s.as_of_date ELSE c.as_of_date END AS as_of_date,
           CASE WHEN f.fate IN ('written', 'same') THEN s.model_version ELSE c.model_version END AS model_version,
           {pick_run}
    FROM results_staging s
    FULL JOIN customer_categories c ON c.company_id = s.company_id AND c.customer_id = s.customer_id
    CROSS JOIN LATERAL (
        SELECT CASE
                   WHEN s.customer_id IS NULL THEN
                       CASE WHEN c.as_of_date = :as_of_date THEN 'removed' ELSE 'kept' END
                   WHEN c.customer_id IS NULL THEN 'written'
                   WHEN c.as_of_date > :as_of_date THEN 'kept_newer'
                   WHEN ({c_columns}, c.as_of_date, c.model_version)
                        IS NOT DISTINCT FROM ({s_columns}, s.as_of_date, s.model_version) THEN 'same'
                   ELSE 'written'
               END AS fate
    ) f
), ins AS (
    INSERT INTO customer_categories_next ({columns}, as_of_date, model_version, scored_at, flow_run_id)
    SELECT {columns}, as_of_date, model_version, scored_at, flow_run_id
    FROM j
    WHERE fate <> 'removed'
)
SELECT fate, count(*) AS n FROM j GROUP BY fate
