"""Running analytics for real: retention, the watermark, several collectors, a crossing seen within seconds."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timezone

import pytest

from collector.analytics.task import AnalyticsTask, pause_after_round_s
from collector.config import AnalyticsConfig, CollectorConfig, DatabaseConfig, HttpConfig, MqttConfig, RetentionConfig
from collector.db.retention import enforce_retention
from collector.service import CollectorService
from collector.web import render_metrics
from shared.protocol import Batch, CrossingRow, Crossings, SightingRow, Sightings, encode_body, frame_message
from shared.simulator import Scenario, ScenarioConfig, two_sensor_shop
from shared.topics import batch_topic
from tests.analytics.store_db import SimulatedStore, run_tables
from tests.collector.collector_helpers import MqttTestClient, eventually

DAY = ScenarioConfig(first_day=date(2024, 3, 5), seed=2)


async def _partitions(store: SimulatedStore) -> set[str]:
    rows = await store.fetch("SELECT relname FROM pg_class WHERE relispartition AND relnamespace = 'footfall'::regnamespace")
    return {r["relname"] for r in rows}


async def test_retention_drops_whole_expired_partitions_and_the_identities_of_expired_sightings(pool):
    scenario = Scenario.generate(two_sensor_shop(), DAY)
    store = await SimulatedStore.create(pool, scenario.layout)
    await store.send(scenario.batches())
    before = await _partitions(store)
    assert {"wifi_sightings_p20240305", "door_crossings_p202403", "visits_p202403", "footfall_p202403"} <= before

    # 20 days later: sightings (14 days) are gone, everything else stays.
    dropped = await enforce_retention(pool, RetentionConfig(), datetime(2024, 3, 26, tzinfo=timezone.utc))
    assert dropped == ["wifi_sightings_p20240305"]
    assert await store.fetch("SELECT * FROM footfall.wifi_mac_hours") == []
    assert await store.fetch("SELECT * FROM footfall.wifi_identities") == []
    assert await pool.fetchval("SELECT count(*) FROM footfall.visits") == len(scenario.truth_visits())

    # A partition goes only once its upper bound is past the limit: March's footfall lives until May 1 + 30 days.
    short = RetentionConfig(footfall_days=30, visits_days=30, trajectory_days=30, door_crossings_days=30)
    assert await enforce_retention(pool, short, datetime(2024, 4, 30, tzinfo=timezone.utc)) == []
    assert sorted(await enforce_retention(pool, short, datetime(2024, 5, 1, tzinfo=timezone.utc))) == [
        "door_crossings_p202403", "footfall_p202403", "trajectory_p202403", "visits_p202403",
    ]  # fmt: skip
    assert RetentionConfig(footfall_days=None).days_of("footfall") is None  # null keeps forever


async def test_visits_close_only_once_every_device_has_delivered_past_them(pool):
    """A visit ended 30 minutes ago; it stays open while the back sensor has not delivered past its end + the gap."""
    layout = two_sensor_shop()
    store = await SimulatedStore.create(pool, layout)
    ended_s = int(time.time()) // 10 * 10 - 1_800
    visit = [SightingRow(t, 1, 1, 1, -50, -50.0, 6, True, 1, None, None) for t in range(ended_s - 600, ended_s, 60)]
    front = Batch(layout.site_id, "front", 1, ended_s + 960, 0, 1, sightings=Sightings(visit))
    back = Batch(layout.site_id, "back", 1, ended_s - 300, 0, 1, sightings=Sightings(visit[:3]))
    await store.send([front, back])
    closed = "SELECT closed FROM footfall.visits"
    assert [r["closed"] for r in await store.fetch(closed)] == [False]

    await store.send([Batch(layout.site_id, "back", 2, ended_s + 1_200, 0, 2)])  # back catches up, nothing new
    await store.analytics.tick()
    assert [r["closed"] for r in await store.fetch(closed)] == [True]


async def test_two_collectors_running_analytics_at_once_produce_the_tables_of_one(fresh_pool):
    scenario = Scenario.generate(two_sensor_shop(), DAY)
    batches = scenario.batches(batch_s=1_800)
    store = await SimulatedStore.create(await fresh_pool(), scenario.layout)
    other = AnalyticsTask(store.pool)
    for start in range(0, len(batches), 6):
        for batch in batches[start : start + 6]:
            await store.writer.commit([store.accepted(batch)])
        await asyncio.gather(store.analytics.tick(), other.tick(), store.analytics.tick())
    await store.analytics.drain()
    assert await store.tables() == await run_tables(fresh_pool, scenario.layout, batches, analytics_every=6)


def test_analytics_rounds_space_out_under_a_burst_and_keep_to_their_share_of_time():
    config = AnalyticsConfig(interval_s=1.0, max_busy_share=0.25)
    assert pause_after_round_s(0.005, config) == 1.0  # quiet: new rows show within the interval
    long_round_s = 2.0
    pause_s = pause_after_round_s(long_round_s, config)
    assert pause_s == pytest.approx(6.0)
    assert long_round_s / (long_round_s + pause_s) == pytest.approx(0.25)
    assert pause_after_round_s(long_round_s, AnalyticsConfig(max_busy_share=1.0)) == 1.0
    # A catch-up round of minutes: the next one still comes within max_pause_s.
    assert pause_after_round_s(235.0, config) == config.max_pause_s == 60.0


async def test_a_crossing_shows_in_footfall_within_seconds_of_its_commit(pool, pg_dsn, broker):
    """The collector service with analytics: publish a door crossing over MQTT, time commit → footfall."""
    config = CollectorConfig(
        database=DatabaseConfig(dsn=pg_dsn),
        mqtt=MqttConfig(host=broker.host, port=broker.port, client_id="analytics-live"),
        http=HttpConfig(port=0),
        analytics=AnalyticsConfig(interval_s=0.5),
    )
    layout = two_sensor_shop()
    store = await SimulatedStore.create(pool, layout)
    async with CollectorService(config) as service:
        await eventually(lambda: service.state.ready)
        publisher = MqttTestClient(broker.host, broker.port)
        try:
            batch = Batch(
                layout.site_id, layout.camera, 1, time.time(), 0, 1,
                crossings=Crossings([CrossingRow(time.time() - 30, "door", "in", 1)]),
            )  # fmt: skip
            body = encode_body(batch)
            signature = store.signers[layout.camera].sign(body)
            publisher.publish(batch_topic(layout.site_id, layout.camera), frame_message(body, signature))
            await eventually(lambda: pool.fetchval("SELECT count(*) = 1 FROM footfall.door_crossings"))
            committed_s = time.monotonic()
            await eventually(lambda: pool.fetchval("SELECT sum(entries) = 1 FROM footfall.footfall"), timeout_s=3.0)
            assert time.monotonic() - committed_s < 3.0  # measured: about 0.5 s with a 0.5 s interval
            metrics = render_metrics(service.state)
            assert service.state.analytics.rounds >= 1 and "footfall_collector_analytics_backlog_buckets" in metrics
        finally:
            publisher.close()
