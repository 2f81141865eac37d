"""PostgreSQL roles: the collector runs as an unprivileged owner, analysts can read and never write."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from collector.db.migrate import apply_migrations
from collector.registry import add_site
from shared.devstack import ThrowawayPostgres
from shared.devstack.postgres import run_psql

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"


def _as_user(dsn: str, user: str) -> str:
    """The same DSN with another user name (the throwaway server trusts loopback)."""
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://{user}@{rest.split('@', 1)[1]}"


@pytest.fixture
def roles_server(pg_server: object) -> ThrowawayPostgres:
    if not isinstance(pg_server, ThrowawayPostgres):
        pytest.skip("roles.sql creates cluster-wide roles; only run against the throwaway server")
    return pg_server


@pytest.fixture
async def analyst_login(roles_server: ThrowawayPostgres) -> AsyncIterator[str]:
    """A fresh login role inside footfall_analyst, dropped afterwards."""
    name = f"analyst_{uuid.uuid4().hex[:8]}"
    yield name
    roles_server.execute(f"DROP ROLE IF EXISTS {name}")


async def test_roles_script_is_idempotent_and_makes_an_unprivileged_writer(roles_server: ThrowawayPostgres) -> None:
    for _ in range(2):
        run_psql(roles_server.bindir, roles_server.dsn, ROLES_SQL.read_text())
    attributes = roles_server.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles"
        " WHERE rolname IN ('footfall', 'footfall_analyst') ORDER BY rolname"
    )
    assert attributes.splitlines() == ["footfall|t|f|f|f", "footfall_analyst|f|f|f|f"]
    assert roles_server.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'footfall'") == "footfall"


async def test_analyst_reads_everything_and_writes_nothing(
    roles_server: ThrowawayPostgres, pg_dsn: str, analyst_login: str
) -> None:
    run_psql(roles_server.bindir, roles_server.dsn, ROLES_SQL.read_text())
    database = pg_dsn.rsplit("/", 1)[1]
    roles_server.execute(f'ALTER DATABASE "{database}" OWNER TO footfall')
    roles_server.execute(f"CREATE ROLE {analyst_login} LOGIN IN ROLE footfall_analyst")

    writer = await asyncpg.connect(_as_user(pg_dsn, "footfall"))
    analyst = await asyncpg.connect(_as_user(pg_dsn, analyst_login))
    try:
        assert not await writer.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert "003_roles" in await apply_migrations(writer)
        await add_site(writer, "store-1", "Europe/Prague", None)
        # A table made after the migration, like a partition the collector creates ahead of the data.
        await writer.execute("CREATE TABLE footfall.later_table (x int)")
        await writer.execute("INSERT INTO footfall.later_table VALUES (7)")

        assert await analyst.fetchval("SELECT time_zone FROM footfall.sites WHERE site_id = 'store-1'") == "Europe/Prague"
        assert await analyst.fetchval("SELECT x FROM footfall.later_table") == 7
        assert await analyst.fetchval("SELECT count(*) FROM footfall.wifi_sightings") == 0

        for statement in (
            "INSERT INTO footfall.sites (site_id, time_zone) VALUES ('store-2', 'UTC')",
            "UPDATE footfall.sites SET time_zone = 'UTC'",
            "DELETE FROM footfall.sites",
            "TRUNCATE footfall.later_table",
            "CREATE TABLE footfall.mine (x int)",
            "DROP TABLE footfall.later_table",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.execute(statement)
        assert await writer.fetchval("SELECT count(*) FROM footfall.sites") == 1
    finally:
        await analyst.close()
        await writer.close()
