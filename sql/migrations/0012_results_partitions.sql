-- Issue 14 #4: the write-back near one COPY.  Both results tables become
-- partitioned tables, so a scoring run loads whole new partitions with COPY
-- and bulk-built indexes and swaps them in (payer_scoring/results.py), instead
-- of upserting every customer row by row under three B-tree keys.
--
-- customer_category_history: LIST-partitioned by as_of_date, one partition per
--   scoring date named customer_category_history_YYYYMMDD (a run COPYs its rows
--   into a new table and ATTACHes it in its transaction; a rerun for the same
--   date builds a replacement and swaps it).  The DEFAULT partition only
--   catches rows inserted by hand for a date without a partition of its own;
--   the write-back moves such rows into the date's partition.
-- customer_categories: RANGE-partitioned by company_id with ONE partition
--   covering every value (FROM MINVALUE TO MAXVALUE), named
--   customer_categories_current.  A run builds the next current rows into a new
--   table and swaps it in with DETACH/ATTACH in its transaction.  Because the
--   parent stays the same relation, the billing view billing_customer_category,
--   the grants on it and on customer_categories (api_reader) and the column
--   contract are untouched by a swap; a partition is read through its parent
--   with the parent's privileges, so partitions carry no grants of their own.
--
-- Columns, CHECK constraints, defaults and keys are the ones of 0005 + 0008,
-- in the same order; the rows are moved over unchanged.

ALTER VIEW billing_customer_category RENAME TO billing_customer_category_0011;
ALTER TABLE customer_categories RENAME TO customer_categories_0011;
ALTER TABLE customer_category_history RENAME TO customer_category_history_0011;
ALTER TABLE customer_categories_0011 RENAME CONSTRAINT customer_categories_pkey TO customer_categories_0011_pkey;
ALTER TABLE customer_category_history_0011 RENAME CONSTRAINT customer_category_history_pkey TO customer_category_history_0011_pkey;
ALTER INDEX customer_categories_company_risk RENAME TO customer_categories_0011_company_risk;

CREATE TABLE customer_categories (
    company_id         text             NOT NULL,
    customer_id        text             NOT NULL,
    category           text             NOT NULL CHECK (category IN ('new', 'good', 'doubtful', 'forgetful', 'bad')),
    p_good             double precision NOT NULL CHECK (p_good BETWEEN 0 AND 1),
    p_doubtful         double precision NOT NULL CHECK (p_doubtful BETWEEN 0 AND 1),
    p_forgetful        double precision NOT NULL CHECK (p_forgetful BETWEEN 0 AND 1),
    p_bad              double precision NOT NULL CHECK (p_bad BETWEEN 0 AND 1),
    observed_category  text             CHECK (observed_category IN ('new', 'good', 'doubtful', 'forgetful', 'bad')),
    as_of_date         date             NOT NULL,
    model_version      text             NOT NULL,
    scored_at          timestamptz      NOT NULL,
    flow_run_id        text             NOT NULL,
    risk_score         double precision CHECK (risk_score BETWEEN 0 AND 1),
    reason_codes       text[]           NOT NULL DEFAULT '{}',
    PRIMARY KEY (company_id, customer_id)
) PARTITION BY RANGE (company_id);
CREATE INDEX customer_categories_company_risk ON customer_categories (company_id, risk_score DESC);
CREATE TABLE customer_categories_current PARTITION OF customer_categories
    FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
INSERT INTO customer_categories SELECT * FROM customer_categories_0011 ORDER BY company_id, customer_id;

CREATE TABLE customer_category_history (
    company_id         text             NOT NULL,
    customer_id        text             NOT NULL,
    category           text             NOT NULL CHECK (category IN ('new', 'good', 'doubtful', 'forgetful', 'bad')),
    p_good             double precision NOT NULL CHECK (p_good BETWEEN 0 AND 1),
    p_doubtful         double precision NOT NULL CHECK (p_doubtful BETWEEN 0 AND 1),
    p_forgetful        double precision NOT NULL CHECK (p_forgetful BETWEEN 0 AND 1),
    p_bad              double precision NOT NULL CHECK (p_bad BETWEEN 0 AND 1),
    observed_category  text             CHECK (observed_category IN ('new', 'good', 'doubtful', 'forgetful', 'bad')),
    as_of_date         date             NOT NULL,
    model_version      text             NOT NULL,
    scored_at          timestamptz      NOT NULL,
    flow_run_id        text             NOT NULL,
    risk_score         double precision CHECK (risk_score BETWEEN 0 AND 1),
    reason_codes       text[]           NOT NULL DEFAULT '{}',
    PRIMARY KEY (as_of_date, company_id, customer_id)
) PARTITION BY LIST (as_of_date);
CREATE TABLE customer_category_history_default PARTITION OF customer_category_history DEFAULT;
DO $$
DECLARE
    d date;
BEGIN
    FOR d IN SELECT DISTINCT as_of_date FROM customer_category_history_0011 ORDER BY 1 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF customer_category_history FOR VALUES IN (%L)',
                       'customer_category_history_' || to_char(d, 'YYYYMMDD'), d);
    END LOOP;
END
$$;
INSERT INTO customer_category_history SELECT * FROM customer_category_history_0011 ORDER BY as_of_date, company_id, customer_id;

-- The billing view again, on the new parent (same text as 0008), with its comment and grant.
CREATE VIEW billing_customer_category AS
SELECT c.company_id,
       c.customer_id,
       c.category,
       l.category_label,
       c.p_good,
       c.p_doubtful,
       c.p_forgetful,
       c.p_bad,
       c.observed_category,
       c.as_of_date,
       c.model_version,
       c.risk_score,
       c.reason_codes,
       ARRAY(SELECT r.text_pt_br FROM unnest(c.reason_codes) WITH ORDINALITY AS u(code, n)
             JOIN reason_code_labels r ON r.code = u.code ORDER BY u.n) AS reason_texts_pt_br,
       ARRAY(SELECT r.text_en FROM unnest(c.reason_codes) WITH ORDINALITY AS u(code, n)
             JOIN reason_code_labels r ON r.code = u.code ORDER BY u.n) AS reason_texts_en
FROM customer_categories c
JOIN category_labels l ON l.category = c.category;

COMMENT ON VIEW billing_customer_category IS
    'Current payer category per customer for the billing system (payer-scoring): category, class probabilities, risk_score (calibrated probability of the named outcome over the horizon), up to 3 reason codes with pt-BR and English texts. Columns are a contract: add, never rename or drop.';

DROP VIEW billing_customer_category_0011;
DROP TABLE customer_categories_0011;
DROP TABLE customer_category_history_0011;

-- The grants of 0005/0008 (billing_reader: the view only) and 0010 (api_reader).
GRANT SELECT ON billing_customer_category TO billing_reader;
GRANT SELECT ON customer_categories, billing_customer_category TO api_reader;
