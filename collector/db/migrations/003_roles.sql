-- The read-only role for data engineers: footfall_analyst may read every
-- table and view of the footfall schema, now and later, and write nothing.
--
-- Roles belong to the whole cluster, so the role is created only when it does
-- not exist yet. Creating it needs CREATEROLE; a collector without it stops
-- here with the fix, which is to run deploy/postgres/roles.sql once as a
-- superuser. Grants are per database and cover tables, views and partitions
-- created later by the collector (the schema owner) through default privileges.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'footfall_analyst') THEN
        IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RAISE EXCEPTION 'role footfall_analyst does not exist and % may not create roles', current_user
                USING HINT = 'run deploy/postgres/roles.sql once as a superuser, then migrate again';
        END IF;
        CREATE ROLE footfall_analyst NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA footfall TO footfall_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA footfall TO footfall_analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA footfall GRANT SELECT ON TABLES TO footfall_analyst;
