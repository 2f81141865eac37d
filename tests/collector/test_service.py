"""The collector in process and as a subprocess, against a real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from collector.config import AnalyticsConfig, CollectorConfig, DatabaseConfig
from collector.service import CollectorService
from collector.web import render_metrics
from shared.devstack import Broker, ThrowawayPostgres
from shared.devstack.ports import free_port
from shared.protocol import decode_ack, encode_status
from shared.signing import DeviceSigner
from shared.topics import status_topic
from tests.collector.collector_helpers import (
    ACK_TOPIC,
    BATCH_TOPIC,
    DEVICE,
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

async def test_end_to_end_with_restart(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner, mqtt5_broker: Broker
) -> None:
    dsn = config.database.dsn
    await enroll_with_cli(dsn, signer)
    async with CollectorService(config, migrate=False) as service:
        await eventually(lambda: service.state.ready)
        for seq in (1, 2, 3):
            publisher.publish(BATCH_TOPIC, sign(make_batch(seq), signer))
        publisher.publish(BATCH_TOPIC, b"\x00 not msgpack")
        publisher.publish(status_topic(SITE, DEVICE), encode_status({"state": "online", "agent_version": "9.9"}))
        await eventually(lambda: last_ack(publisher) == 3)
        await eventually(lambda: service.state.pending_messages == 0)
        await check_http(service)
    # Published while no collector runs: the broker queues them in the collector's session.
    for seq in (4, 5):
        publisher.publish(BATCH_TOPIC, sign(make_batch(seq), signer))
    async with CollectorService(config) as service:
        await eventually(lambda: last_ack(publisher) == 5)

    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM footfall.wifi_sightings") == 25
        assert await connection.fetchval("SELECT array_agg(reason) FROM footfall.ingest_rejects") == ["bad_msgpack"]
        device = await connection.fetchrow("SELECT acked_seq, agent_version FROM footfall.devices")
        assert tuple(device) == (5, "9.9")
    finally:
        await connection.close()
    late = MqttTestClient(mqtt5_broker.host, mqtt5_broker.port)
    try:
        late.subscribe(ACK_TOPIC)  # the ack is retained: a device that reconnects learns it at once
        assert decode_ack(late.wait_for(ACK_TOPIC)[-1]) == 5
    finally:
        late.close()


async def check_http(service: CollectorService) -> None:
    base = f"http://127.0.0.1:{service.http_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
            health = await response.json()
            assert (health["status"], health["broker"], health["database"]) == ("ok", "connected", "connected")
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 200
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
    assert "footfall_collector_batches_committed_total 3" in text
    assert 'footfall_collector_rows_committed_total{table="wifi_sightings"} 15' in text
    assert 'footfall_collector_rejected_total{reason="bad_msgpack"} 1' in text
    assert "footfall_collector_pending_messages 0" in text and "footfall_collector_oldest_pending_seconds 0.0" in text
    # make_batch dates its batches at NOW_S, long before this test runs: all land in the +Inf bucket.
    assert "footfall_collector_batch_latency_seconds_count 3" in text
    assert 'footfall_collector_batch_latency_seconds_bucket{le="86400"} 0' in text
    assert 'footfall_collector_batch_latency_seconds_bucket{le="+Inf"} 3' in text
    assert "footfall_collector_db_pool_max_connections 4" in text


async def test_a_killed_checker_process_costs_no_batch(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner, caplog: pytest.LogCaptureFixture
) -> None:
    """The OOM killer takes a checker process: that group is checked in the service thread, then a new pool."""
    await enroll_with_cli(config.database.dsn, signer)
    async with CollectorService(dataclasses.replace(config, analytics=AnalyticsConfig(enabled=False))) as service:
        await eventually(lambda: service.state.ready)
        publisher.publish(BATCH_TOPIC, sign(make_batch(1), signer))
        await eventually(lambda: last_ack(publisher) == 1)
        checkers = multiprocessing.active_children()
        assert len(checkers) == config.ingest.check_workers == 1
        os.kill(checkers[0].pid, signal.SIGKILL)
        await eventually(lambda: not checkers[0].is_alive())
        for seq in (2, 3):
            publisher.publish(BATCH_TOPIC, sign(make_batch(seq), signer))
            await eventually(lambda: last_ack(publisher) == seq)
        assert "checkers=broken" in caplog.text
        fresh = multiprocessing.active_children()
        assert len(fresh) == 1 and fresh[0].pid != checkers[0].pid  # the group after it started a new pool
        assert service.state.batches_committed == 3 and not service.state.rejected


async def test_broker_restart_is_survived(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner, mqtt5_broker: Broker
) -> None:
    await enroll_with_cli(config.database.dsn, signer)
    async with CollectorService(config, migrate=False) as service:
        await eventually(lambda: service.state.ready)
        publisher.publish(BATCH_TOPIC, sign(make_batch(1), signer))
        await eventually(lambda: last_ack(publisher) == 1)
        mqtt5_broker.kill()
        await eventually(lambda: not service.state.ready)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{service.http_port}/readyz") as response:
                assert response.status == 503
        mqtt5_broker.restart()
        await eventually(lambda: service.state.ready)
        sender = MqttTestClient(mqtt5_broker.host, mqtt5_broker.port)
        try:
            sender.subscribe(ACK_TOPIC)
            sender.publish(BATCH_TOPIC, sign(make_batch(2, sightings=sighting_rows(50, 1_774_871_000)), signer))
            await eventually(lambda: last_ack(sender) == 2)
        finally:
            sender.close()
        assert service.state.batches_committed == 2


async def test_subprocess_runs_and_stops_on_sigterm(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner, tmp_path: Path
) -> None:
    await enroll_with_cli(config.database.dsn, signer)
    http_port = free_port()
    config_path = tmp_path / "collector.yaml"
    config_path.write_text(
        json.dumps(  # JSON is YAML
            {
                "mqtt": {"host": config.mqtt.host, "port": config.mqtt.port, "client_id": config.mqtt.client_id},
                "http": {"port": http_port},
            }
        )
    )
    environment = {**os.environ, "FOOTFALL_DATABASE_DSN": config.database.dsn}
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(config_path)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{http_port}/readyz") as response:
                        return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, timeout_s=20)
        publisher.publish(BATCH_TOPIC, sign(make_batch(1), signer))
        await eventually(lambda: last_ack(publisher) == 1)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=15)
        assert process.returncode == 0, output.decode()
        assert b"collector=stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this test alone, so it can be stopped without hurting other tests."""
    server = ThrowawayPostgres(durable=False)
    try:
        server.start()
        yield server
    finally:
        server.close()


async def on_own_database(config: CollectorConfig, server: ThrowawayPostgres, signer: DeviceSigner) -> CollectorConfig:
    dsn = server.create_database("outage")
    await enroll_with_cli(dsn, signer)
    return dataclasses.replace(config, database=DatabaseConfig(dsn=dsn))


async def test_database_outage_acks_nothing_until_committed(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner, own_postgres: ThrowawayPostgres
) -> None:
    config = await on_own_database(config, own_postgres, signer)
    async with CollectorService(config, migrate=False) as service:
        await eventually(lambda: service.state.ready)
        publisher.publish(BATCH_TOPIC, sign(make_batch(1), signer))
        await eventually(lambda: last_ack(publisher) == 1)
        await asyncio.to_thread(own_postgres.stop)
        publisher.publish(BATCH_TOPIC, sign(make_batch(2), signer))
        await eventually(lambda: service.state.db_errors > 0)
        assert not service.state.ready and service.state.pending_messages == 1
        await asyncio.sleep(0.3)
        metrics = render_metrics(service.state)
        assert "footfall_collector_pending_messages 1" in metrics
        assert 0.3 <= metric_value(metrics, "footfall_collector_oldest_pending_seconds") < 10
        # Stopping now abandons the uncommitted group unacked, promptly.
        started_s = time.monotonic()
    assert time.monotonic() - started_s < 5
    assert last_ack(publisher) == 1
    await asyncio.to_thread(own_postgres.start)
    # The broker redelivers batch 2 to the collector's session after the restart.
    async with CollectorService(config, migrate=False):
        await eventually(lambda: last_ack(publisher) == 2)


async def test_database_outage_while_running_recovers(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner, own_postgres: ThrowawayPostgres
) -> None:
    config = await on_own_database(config, own_postgres, signer)
    async with CollectorService(config, migrate=False) as service:
        await eventually(lambda: service.state.ready)
        await asyncio.to_thread(own_postgres.stop)
        publisher.publish(BATCH_TOPIC, sign(make_batch(1), signer))
        await eventually(lambda: service.state.db_errors > 0)
        await asyncio.to_thread(own_postgres.start)
        await eventually(lambda: last_ack(publisher) == 1)
        await eventually(lambda: service.state.ready)


async def test_collectors_share_the_load(
    config: CollectorConfig, publisher: MqttTestClient, signer: DeviceSigner, mqtt5_broker: Broker
) -> None:
    if not mqtt5_broker.shared_subscriptions:
        pytest.skip("the broker has no shared subscriptions")
    await enroll_with_cli(config.database.dsn, signer)
    configs = [
        dataclasses.replace(
            config, mqtt=dataclasses.replace(config.mqtt, shared_group="collectors", client_id=f"{config.mqtt.client_id}-{i}")
        )
        for i in range(2)
    ]
    async with CollectorService(configs[0], migrate=False) as first, CollectorService(configs[1]) as second:
        await eventually(lambda: first.state.ready and second.state.ready)
        for seq in range(1, 41):
            publisher.publish(BATCH_TOPIC, sign(make_batch(seq), signer))
        await eventually(lambda: first.state.batches_committed + second.state.batches_committed == 40)
        assert first.state.batches_committed > 0 and second.state.batches_committed > 0
        # Each collector publishes the watermark it committed; the newest retained one is final.
        await eventually(lambda: max(decode_ack(p) for p in publisher.messages.get(ACK_TOPIC, [b'{"acked_seq":0}'])) == 40)
