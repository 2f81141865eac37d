"""The collector speaking MQTT 3.1.1 (``mqtt.version: "3.1.1"``) to amqtt, the broker of machines without Mosquitto.

amqtt has no MQTT 5, so this is what `make demo` runs there. What must still
hold: batches are committed and acked to the device, and what is published
while the collector is away waits in its persistent session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
import pytest

from collector.config import (
    CollectorConfig,
    ConfigError,
    DatabaseConfig,
    HttpConfig,
    IngestConfig,
    MqttConfig,
    load_collector_config,
)
from collector.service import CollectorService
from shared.devstack.broker import AmqttBroker
from shared.signing import DeviceSigner
from tests.collector.collector_helpers import (
    ACK_TOPIC,
    BATCH_TOPIC,
    MqttTestClient,
    enroll_with_cli,
    eventually,
    last_ack,
    make_batch,
    sign,
)

pytest.importorskip("amqtt", reason="amqtt (the `demo` extra) is not installed")


@pytest.fixture(scope="module")
def amqtt_broker() -> Iterator[AmqttBroker]:
    with AmqttBroker() as broker:
        yield broker


async def test_a_collector_on_mqtt_311_commits_acks_and_keeps_its_session(pg_dsn: str, amqtt_broker: AmqttBroker) -> None:
    signer = DeviceSigner.generate()
    await enroll_with_cli(pg_dsn, signer)
    config = CollectorConfig(
        database=DatabaseConfig(dsn=pg_dsn),
        mqtt=MqttConfig(
            host=amqtt_broker.host,
            port=amqtt_broker.port,
            version="3.1.1",
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
        ),
        ingest=IngestConfig(flush_interval_ms=10),
        http=HttpConfig(port=0),
    )
    publisher = MqttTestClient(amqtt_broker.host, amqtt_broker.port, protocol=mqtt.MQTTv311)
    publisher.subscribe(ACK_TOPIC)
    try:
        async with CollectorService(config, migrate=False) as service:
            await eventually(lambda: service.state.ready)
            for seq in (1, 2):
                publisher.publish(BATCH_TOPIC, sign(make_batch(seq), signer))
            await eventually(lambda: last_ack(publisher) == 2)
        # Published while no collector runs: the broker queues them in the collector's session.
        publisher.publish(BATCH_TOPIC, sign(make_batch(3), signer))
        async with CollectorService(config, migrate=False) as service:
            await eventually(lambda: last_ack(publisher) == 3)
    finally:
        publisher.close()
    connection = await asyncpg.connect(pg_dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM footfall.ingest_batches") == 3
        assert await connection.fetchval("SELECT count(*) FROM footfall.ingest_rejects") == 0
    finally:
        await connection.close()


def test_a_shared_group_needs_mqtt_5(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text('mqtt:\n  version: "3.1.1"\n  shared_group: collectors\n')
    with pytest.raises(ConfigError, match="mqtt.version: 5"):
        load_collector_config(path, environ={})
