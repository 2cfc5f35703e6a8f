-- Staging table for one write: dropped at commit, never WAL-logged.
CREATE TEMP TABLE results_staging (
    company_id         text,
    customer_id        text,
    category           text,
    p_good             double precision,
    p_doubtful         double precision,
    p_forgetful        double precision,
    p_bad              double precision,
    observed_category  text
) ON COMMIT DROP
