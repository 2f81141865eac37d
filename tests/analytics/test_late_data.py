"""Late data: whatever order batches arrive in, the analytics tables end up the same.

Each run feeds the same simulated batches into its own database, with the
analytics task running between deliveries as it would live, and compares
every row of visits, trajectory, footfall and the identity map with an
in-order run.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timezone

import pytest

from shared.protocol import Batch, SightingRow, Sightings
from shared.simulator import Scenario, ScenarioConfig, two_sensor_shop
from shared.simulator.edge import edge_batches
from tests.analytics.store_db import SimulatedStore, run_tables

TWO_DAYS = ScenarioConfig(
    first_day=date(2024, 3, 4), days=2, regulars=20, regular_visit_chance=0.9, key_period_s=7 * 86_400, seed=3
)
#: The back sensor is offline until noon UTC of the second day, then uploads its spool.
RECONNECT_S = datetime.combine(date(2024, 3, 5), time(12), timezone.utc).timestamp()


def back_sensor_offline_until_noon(batches: list[Batch]) -> list[Batch]:
    """The live order, except that the back sensor's batches arrive once it reconnects, in its spool order."""
    return sorted(batches, key=lambda b: max(b.created_at_s, RECONNECT_S) if b.device_id == "back" else b.created_at_s)


def shuffled(batches: list[Batch]) -> list[Batch]:
    return random.Random(9).sample(batches, len(batches))


@pytest.mark.parametrize("send", ["perfect_links", "edge_path"])
async def test_a_spool_uploaded_a_day_late_gives_the_tables_of_an_in_order_run(fresh_pool, send):
    scenario = Scenario.generate(two_sensor_shop(), TWO_DAYS if send == "perfect_links" else TWO_DAYS_DAILY_KEY)
    batches = scenario.batches(batch_s=1_800) if send == "perfect_links" else edge_batches(scenario, batch_s=1_800)
    in_order = await run_tables(fresh_pool, scenario.layout, batches, analytics_every=2)
    late = await run_tables(fresh_pool, scenario.layout, back_sensor_offline_until_noon(batches), analytics_every=2)
    assert late == in_order
    assert len(in_order["visits"]) > 150 and len(in_order["footfall"]) > 300


async def test_batches_in_any_order_give_the_same_tables(fresh_pool):
    scenario = Scenario.generate(two_sensor_shop(), TWO_DAYS)
    batches = scenario.batches(batch_s=1_800)
    in_order = await run_tables(fresh_pool, scenario.layout, batches, analytics_every=3)
    assert await run_tables(fresh_pool, scenario.layout, shuffled(batches), analytics_every=2) == in_order


#: The edge path's benchmark key rotates daily.
TWO_DAYS_DAILY_KEY = ScenarioConfig(first_day=date(2024, 3, 4), days=2, seed=3)


async def test_a_late_link_between_two_sensors_clusters_renames_the_visitor_and_replaces_its_visits(pool):
    """back heard the phone on MAC 20 at 10:00 and 14:00 (its cluster 20); front heard MAC 10 at 13:55
    and then MAC 20 (its cluster 10).

    Until front's batch arrives, the phone is visitor 20 with two visits; then MACs 10 and 20 are one
    phone, visitor 10, and the morning visit, hours away from front's rows, must be renamed too.
    """
    layout = two_sensor_shop()
    store = await SimulatedStore.create(pool, layout)
    ten, two = (int(datetime(2024, 3, 5, hour, tzinfo=timezone.utc).timestamp()) for hour in (10, 14))

    def rows(pseudonym: int, cluster: int, first_s: int, last_s: int, rssi: int) -> list[SightingRow]:
        return [SightingRow(t, pseudonym, cluster, 2, rssi, float(rssi), 6, True, 1, None, None) for t in range(first_s, last_s, 60)]

    back = Batch(
        layout.site_id, "back", 1, two + 900, 0, 1,
        sightings=Sightings(rows(20, 20, ten, ten + 600, -50) + rows(20, 20, two, two + 600, -50)),
    )  # fmt: skip
    front = Batch(
        layout.site_id, "front", 1, two + 900, 0, 1,
        sightings=Sightings(rows(10, 10, two - 300, two, -52) + rows(20, 10, two, two + 600, -74)),
    )  # fmt: skip
    await store.send([back])
    visits = "SELECT visitor_id, dwell_s FROM footfall.visits ORDER BY started_at"
    assert [tuple(r) for r in await store.fetch(visits)] == [(20, 550), (20, 550)]
    await store.send([front])
    assert [tuple(r) for r in await store.fetch(visits)] == [(10, 550), (10, 850)]
    zones = await store.fetch("SELECT zone_id FROM footfall.trajectory WHERE entered_at >= $1 ORDER BY seq", datetime.fromtimestamp(two - 300, timezone.utc))
    assert [r["zone_id"] for r in zones] == ["entrance", "aisles"]
    assert {tuple(r) for r in await store.fetch("SELECT pseudonym, visitor_id FROM footfall.wifi_identities")} == {
        (10, 10),
        (20, 10),
    }
