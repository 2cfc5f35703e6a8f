-- Scoring results and the billing contract.
--
-- customer_categories: the current category of each customer (one row per
--   company_id + customer_id), read by the billing system through the view
--   billing_customer_category.  A row is only ever replaced by a run whose
--   as_of_date is the same or newer (tasks/write.py), so a backfill for an older
--   date never overwrites a newer category.
-- customer_category_history: one row per customer per as_of_date; a rerun for
--   the same as_of_date replaces that date's rows.
-- scored_at / flow_run_id say which run wrote the row's current content: a
--   rerun that computes the same content leaves the row untouched, so two runs
--   for the same as_of_date give byte-identical tables.
--
-- Category codes are checked with CHECK constraints (a foreign key would cost
-- a trigger call per written row: it tripled the write time of 300,000 rows).
-- Probabilities are the model's class probabilities (0-1, summing to 1 within
-- 1e-6); customers with too little history (category `new`) still carry them.

-- The five codes and their pt-BR labels.  A view over constants rather than a
-- table: the labels are part of the schema (changing one is a migration) and
-- no data load or TRUNCATE can empty them.
CREATE VIEW category_labels (category, category_label, sort_order) AS
VALUES
    ('new',       'Novos Pagadores',      1),
    ('good',      'Bons Pagadores',       2),
    ('doubtful',  'Pagadores Duvidosos',  3),
    ('forgetful', 'Pagadores Esquecidos', 4),
    ('bad',       'Maus Pagadores',       5);

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
    PRIMARY KEY (company_id, customer_id)
)
-- Every daily run rewrites every row; free space on each page lets
-- PostgreSQL update in place (HOT) without touching the primary key index.
-- "customers of company X in category Y" uses the key prefix company_id.
WITH (fillfactor = 50);

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
    -- as_of_date first: each day's rows are appended at the end of the index,
    -- and "replace one as_of" / "compare two days" use the key prefix.
    PRIMARY KEY (as_of_date, company_id, customer_id)
);

-- The billing contract: the only relation billing_reader may read.
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
       c.model_version
FROM customer_categories c
JOIN category_labels l ON l.category = c.category;

COMMENT ON VIEW billing_customer_category IS
    'Current payer category per customer for the billing system (payer-scoring). Columns are a contract: add, never rename or drop.';

-- billing_reader: a LOGIN role for the billing system.  Roles belong to the
-- whole server (several databases may run this migration), so it is created
-- only when missing; concurrent creation by two databases is tolerated.  It has
-- no password here: set one with
--     ALTER ROLE billing_reader PASSWORD '...';
-- (the embedded server trusts local connections; a real server needs the
-- password and a pg_hba.conf entry).  Creating a role needs CREATEROLE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'billing_reader') THEN
        CREATE ROLE billing_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;  -- created meanwhile by another database
END
$$;

-- Nothing but the view: no table privileges, no object creation in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM billing_reader;
GRANT USAGE ON SCHEMA public TO billing_reader;
GRANT SELECT ON billing_customer_category TO billing_reader;
