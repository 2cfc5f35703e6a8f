-- Hardening (issue 12): billing_reader gets exactly what billing needs in this
-- database - CONNECT and SELECT on the view billing_customer_category - and no
-- more.  PostgreSQL grants CONNECT and TEMPORARY on every database to PUBLIC by
-- default, so billing_reader could create temporary tables here and connect to
-- every database on the server.  Here:
--
-- * PUBLIC loses CONNECT and TEMPORARY on this database; billing_reader gets
--   CONNECT back (no TEMPORARY).  The database owner keeps its own privileges
--   (owners hold them directly, not through PUBLIC) and superusers are not
--   checked.  Another role that must connect (e.g. a service role) needs its
--   own GRANT CONNECT ON DATABASE in its migration.
-- * Scratch databases the project creates (tests, benchmarks) are created
--   without PUBLIC CONNECT/TEMPORARY (payer_scoring/db.py ensure_database).
--   Databases created by others keep PostgreSQL's defaults: restrict them with
--   REVOKE CONNECT ON DATABASE ... FROM PUBLIC or pg_hba.conf.
-- * Reading the system catalogs (pg_class, pg_proc, information_schema: the
--   names of tables and functions, not their rows) stays allowed to every
--   role, as PostgreSQL's default; that exposes metadata only.
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO billing_reader', current_database());
END
$$;
