-- Roles and database of a footfall installation. Run once per PostgreSQL
-- cluster as a superuser:
--
--     psql -v ON_ERROR_STOP=1 -U postgres -f deploy/postgres/roles.sql
--
-- * footfall          the collector's writer role: it logs in, owns the
--                     footfall database and schema (the collector migrates the
--                     schema and creates time partitions ahead of the data),
--                     and has no other power: no superuser, no CREATEDB, no
--                     CREATEROLE. Set its password (or use a client
--                     certificate) with ALTER ROLE footfall PASSWORD '...'.
-- * footfall_analyst  read-only: SELECT on every table and view of the
--                     footfall schema, granted by migration 003_roles. Give a
--                     person or a BI tool their own login in this role:
--                         CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE footfall_analyst;
--
-- Safe to run again: existing roles and the database are left as they are.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'footfall') THEN
        CREATE ROLE footfall LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'footfall_analyst') THEN
        CREATE ROLE footfall_analyst NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
END
$$;

SELECT 'CREATE DATABASE footfall OWNER footfall'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'footfall')
\gexec
