-- Runs once when the postgres container initialises its volume.
-- One server, two databases: payer_scoring (the project's data) and prefect
-- (the Prefect server's own state; it needs the pg_trgm extension).
CREATE DATABASE prefect;
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
