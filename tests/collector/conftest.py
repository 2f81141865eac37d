"""Collector fixtures on top of the shared harness (``pg_dsn``, ``broker`` in tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from collector.config import CollectorConfig, DatabaseConfig, HttpConfig, IngestConfig, MqttConfig
from shared.devstack import Broker
from shared.signing import DeviceSigner
from tests.collector.collector_helpers import ACK_TOPIC, MqttTestClient, enroll


@pytest.fixture
def signer() -> DeviceSigner:
    return DeviceSigner.generate()


@pytest.fixture
async def enrolled(db: asyncpg.Pool, signer: DeviceSigner) -> DeviceSigner:
    """The default test device (shop1/pi1), enrolled with ``signer``'s key."""
    await enroll(db, signer)
    return signer


@pytest.fixture
def mqtt5_broker(broker: Broker) -> Broker:
    if not broker.mqtt5:
        pytest.skip("the collector needs an MQTT 5 broker (Mosquitto)")
    return broker


@pytest.fixture
def config(pg_dsn: str, mqtt5_broker: Broker) -> CollectorConfig:
    return CollectorConfig(
        database=DatabaseConfig(dsn=pg_dsn),
        mqtt=MqttConfig(
            host=mqtt5_broker.host,
            port=mqtt5_broker.port,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
        ),
        ingest=IngestConfig(flush_interval_ms=10),
        http=HttpConfig(port=0),
    )


@pytest.fixture
def publisher(mqtt5_broker: Broker) -> Iterator[MqttTestClient]:
    client = MqttTestClient(mqtt5_broker.host, mqtt5_broker.port)
    client.subscribe(ACK_TOPIC)
    yield client
    client.close()
