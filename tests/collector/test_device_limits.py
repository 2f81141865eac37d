"""Per-device limits and device status, through a real broker into a running collector."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import asyncpg

from collector.config import CollectorConfig, IngestConfig, LimitsConfig
from collector.service import CollectorService
from collector.web import render_metrics
from shared.protocol import encode_status
from shared.signing import DeviceSigner
from shared.topics import status_topic
from tests.collector.collector_helpers import (
    BATCH_TOPIC,
    DEVICE,
    NOW_S,
    SITE,
    MqttTestClient,
    enroll_with_cli,
    eventually,
    last_ack,
    make_batch,
    metric_value,
    sighting_rows,
    sign,
)

STATUS_TOPIC = status_topic(SITE, DEVICE)


async def test_over_the_rate_limit_is_rejected_and_commits_when_resent(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner
) -> None:
    """A throttled batch is acked as rate_limited, the device's ack stops below it, and its resend commits."""
    await enroll_with_cli(config.database.dsn, signer)
    limited = dataclasses.replace(config, limits=LimitsConfig(device_events_per_s=5, device_burst_events=10))
    batches = [sign(make_batch(seq, sightings=sighting_rows(6, int(NOW_S) - 60, seq * 100)), signer) for seq in (1, 2, 3, 4)]
    async with CollectorService(limited, migrate=False) as service:
        await eventually(lambda: service.state.ready)
        # 10 tokens: batch 1 leaves 4, batch 2 goes into debt (-2), batch 3 finds none (refill is 5/s).
        for message in batches[:3]:
            publisher.publish(BATCH_TOPIC, message)
        await eventually(lambda: service.state.rejected["rate_limited"] == 1)
        await eventually(lambda: last_ack(publisher) == 2)
        assert service.state.pending_messages == 0  # acked, not held
        await asyncio.sleep(0.6)  # the bucket refills; the device's ack timeout would resend 3 now, with what follows
        for message in batches[2:]:
            publisher.publish(BATCH_TOPIC, message)
        await eventually(lambda: last_ack(publisher) >= 3)
        metrics = render_metrics(service.state)
    assert metric_value(metrics, 'footfall_collector_rejected_total{reason="rate_limited"}') >= 1
    connection = await asyncpg.connect(config.database.dsn)
    try:
        rejects = await connection.fetch("SELECT reason, batch_seq, device_id FROM footfall.ingest_rejects")
        assert {tuple(r) for r in rejects} <= {("rate_limited", 3, DEVICE), ("rate_limited", 4, DEVICE)}
        assert ("rate_limited", 3, DEVICE) in {tuple(r) for r in rejects}
        committed = await connection.fetch("SELECT batch_seq FROM footfall.ingest_batches ORDER BY batch_seq")
        assert [r["batch_seq"] for r in committed][:3] == [1, 2, 3]
    finally:
        await connection.close()


async def test_status_messages_fill_the_device_row(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner
) -> None:
    await enroll_with_cli(config.database.dsn, signer)
    settled = dataclasses.replace(config, ingest=IngestConfig(flush_interval_ms=10, status_settle_s=0.2))
    async with CollectorService(settled, migrate=False) as service:
        await eventually(lambda: service.state.ready)
        await asyncio.sleep(0.3)  # past the settle time: a status now arrives live
        device_clock_s = time.time() + 120.0  # the device's clock runs two minutes ahead
        status = {
            "state": "online",
            "agent_version": "0.3.0",
            "at_s": device_clock_s,
            "spool": {"batches": 12, "bytes": 65536, "evicted_batches": 1, "evicted_events": 250},
            "wifi": {"state": "capturing", "capture": {"state": "capturing", "kernel_drops": 3}},
            "camera": {"state": "streaming"},
        }
        publisher.publish(STATUS_TOPIC, encode_status(status), retain=True)
        await eventually(lambda: service.state.status_updates == 1)
    connection = await asyncpg.connect(config.database.dsn)
    try:
        device = await connection.fetchrow("SELECT * FROM footfall.devices")
        assert (device["status_state"], device["agent_version"], device["spool_batches"]) == ("online", "0.3.0", 12)
        assert (device["evicted_batches"], device["evicted_events"], device["dropped_frames"]) == (1, 250, 3)
        assert (device["wifi_state"], device["camera_state"]) == ("capturing", "streaming")
        assert 118.0 < device["clock_skew_s"] <= 120.0  # minus the broker and network delay
        assert device["last_seen_at"] is not None
        assert json.loads(device["last_status"])["spool"]["bytes"] == 65536
        first_seen = device["last_seen_at"]
    finally:
        await connection.close()

    # A new collector gets the retained copy: state is refreshed, but a copy proves nothing about now.
    fresh = dataclasses.replace(settled, mqtt=dataclasses.replace(settled.mqtt, client_id=f"{settled.mqtt.client_id}-b"))
    async with CollectorService(fresh, migrate=False) as service:
        await eventually(lambda: service.state.status_updates == 1)
    connection = await asyncpg.connect(config.database.dsn)
    try:
        device = await connection.fetchrow("SELECT * FROM footfall.devices")
        assert device["last_seen_at"] == first_seen and 118.0 < device["clock_skew_s"] <= 120.0
        assert device["status_received_at"] > first_seen
    finally:
        await connection.close()
