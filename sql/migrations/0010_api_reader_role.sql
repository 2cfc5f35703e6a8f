-- api_reader: the HTTP service's own database role (entrypoints/api.py).
--
-- It reads what the service needs and writes nothing:
--   * the results (customer_categories, the category_labels and
--     billing_customer_category views) for the current-category endpoints;
--   * the sources the feature query reads (payments, companies,
--     quarantined_payments) for POST /v1/customer/predict, which adds its one
--     bill inside the query as bind parameters, never as a row;
--   * model_registry for the champion (its artifact is read from the model store).
-- No INSERT/UPDATE/DELETE/TRUNCATE on anything, no CREATE in any schema (0005
-- revoked CREATE on public from PUBLIC), and no temporary tables: TEMPORARY on
-- this database is revoked from PUBLIC below.  The database owner and
-- superusers keep it (the scoring write's staging table is a temporary table);
-- a later role that needs temporary tables is granted TEMPORARY explicitly.
-- Belt and braces: the role's sessions start read-only and with a statement
-- timeout, so a bug in the service cannot write or hold a backend for long.
--
-- Like billing_reader (0005) it is a LOGIN role without a password here: the
-- embedded server trusts local connections; on a real server set one with
--     payer-scoring db api-password        (reads API_READER_PASSWORD)
-- and point PAYER_SCORING_API_DATABASE_URL at it.  Roles belong to the whole
-- server, so it is created only when missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'api_reader') THEN
        CREATE ROLE api_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;  -- created meanwhile by another database
END
$$;

ALTER ROLE api_reader SET default_transaction_read_only = on;
ALTER ROLE api_reader SET statement_timeout = '10s';

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM api_reader;
GRANT USAGE ON SCHEMA public TO api_reader;
GRANT SELECT ON customer_categories, category_labels, billing_customer_category,
                payments, companies, quarantined_payments, model_registry
    TO api_reader;

DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM api_reader', current_database());
    -- 0009 took CONNECT from PUBLIC: the service's role gets it on this database only.
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO api_reader', current_database());
END
$$;
