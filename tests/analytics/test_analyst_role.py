"""footfall_analyst (migration 003, issue 7) reads every analytics table, view and function, and writes nothing."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from collector.db.migrate import apply_migrations
from shared.devstack import ThrowawayPostgres
from shared.devstack.postgres import run_psql
from shared.simulator import Scenario, ScenarioConfig, two_sensor_shop
from tests.analytics.store_db import SimulatedStore
from tests.deploy.test_postgres_roles import ROLES_SQL, _as_user, analyst_login, roles_server  # noqa: F401 (fixtures)

READABLE = (
    "footfall.visits", "footfall.trajectory", "footfall.footfall", "footfall.footfall_hourly", "footfall.footfall_daily",
    "footfall.zone_flows", "footfall.visit_frequency_segments", "footfall.visit_frequency(now())",
    "footfall.campaigns", "footfall.campaign_comparison", "footfall.wifi_identities", "footfall.analytics_dirty",
)  # fmt: skip


async def test_the_analyst_reads_the_analytics_and_cannot_change_them(
    roles_server: ThrowawayPostgres, pg_dsn: str, analyst_login: str
) -> None:
    run_psql(roles_server.bindir, roles_server.dsn, ROLES_SQL.read_text())
    roles_server.execute(f'ALTER DATABASE "{pg_dsn.rsplit("/", 1)[1]}" OWNER TO footfall')
    roles_server.execute(f"CREATE ROLE {analyst_login} LOGIN IN ROLE footfall_analyst")
    collector = await asyncpg.create_pool(_as_user(pg_dsn, "footfall"), min_size=1, max_size=4)
    analyst = await asyncpg.connect(_as_user(pg_dsn, analyst_login))
    try:
        async with collector.acquire() as connection:
            await apply_migrations(connection)
        scenario = Scenario.generate(two_sensor_shop(), ScenarioConfig(first_day=date(2024, 3, 5), passersby_per_day=10))
        store = await SimulatedStore.create(collector, scenario.layout)
        await store.send(scenario.batches())  # the collector creates the partitions as it goes

        for relation in READABLE:
            await analyst.fetch(f"SELECT * FROM {relation} LIMIT 1")
        assert await analyst.fetchval("SELECT count(*) FROM footfall.visits") == len(scenario.truth_visits())
        for statement in (
            "INSERT INTO footfall.campaigns (site_id, campaign_id, first_day, last_day) VALUES ('sim-shop', 'x', now(), now())",
            "UPDATE footfall.sites SET visit_gap_s = 60",
            "DELETE FROM footfall.footfall",
            "DELETE FROM footfall.analytics_dirty",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.execute(statement)
    finally:
        await analyst.close()
        await collector.close()
