"""Helpers for collector tests: signed messages, enrolled devices, an MQTT test client."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.cli import main as cli_main
from collector.ingest import Accepted, ingest_batch
from collector.registry import add_site, enroll_device
from shared.protocol import (
    Batch,
    CrossingRow,
    Crossings,
    PasserbyCounts,
    PasserbyRow,
    SightingRow,
    Sightings,
    decode_ack,
    encode_body,
    frame_message,
)
from shared.signing import DeviceSigner, load_verifier
from shared.topics import ack_topic, batch_topic

SITE, DEVICE = "shop1", "pi1"
ACK_TOPIC = ack_topic(SITE, DEVICE)
BATCH_TOPIC = batch_topic(SITE, DEVICE)
#: A fixed "now" (2026-03-30 12:00 UTC) keeps partition names predictable.
NOW_S = 1_774_872_000.0


def sighting_rows(count: int, start_s: int, pseudonym_base: int = 0) -> list[SightingRow]:
    """``count`` sightings; every three consecutive pseudonyms form one cluster (one linked phone)."""
    window_start_s = start_s - start_s % 10
    return [
        SightingRow(
            window_start_s, pseudonym_base + i, pseudonym_base + i - i % 3, 3, -50 - i % 40, -60.5, 6, i % 2 == 0, 77, 100, 140
        )
        for i in range(count)
    ]


def make_batch(
    seq: int,
    *,
    site_id: str = SITE,
    device_id: str = DEVICE,
    spool_floor: int = 1,
    sightings: Sequence[SightingRow] | None = None,
    crossings: Sequence[CrossingRow] = (),
    passersby: Sequence[PasserbyRow] = (),
    now_s: float = NOW_S,
) -> Batch:
    rows = list(sightings) if sightings is not None else sighting_rows(5, int(now_s) - 60, seq * 1000)
    return Batch(
        site_id=site_id,
        device_id=device_id,
        seq=seq,
        created_at_s=now_s,
        key_epoch=3,
        spool_floor=spool_floor,
        sightings=Sightings(rows=rows) if rows else None,
        crossings=Crossings(rows=list(crossings)) if crossings else None,
        passersby=PasserbyCounts(rows=list(passersby)) if passersby else None,
    )


def sign(batch: Batch, signer: DeviceSigner) -> bytes:
    body = encode_body(batch)
    return frame_message(body, signer.sign(body))


def accepted(batch: Batch, signer: DeviceSigner, received_at_s: float = NOW_S) -> Accepted:
    """Run a signed batch through ingest, as the service would; fail loudly if it is rejected."""
    key = (batch.site_id, batch.device_id)
    verifier = load_verifier(signer.public_key_bytes)
    result = ingest_batch(
        batch_topic(*key), sign(batch, signer), received_at_s, lambda s, d: verifier if (s, d) == key else None
    )
    assert isinstance(result, Accepted), result
    return result


async def enroll(pool: asyncpg.Pool, signer: DeviceSigner, site_id: str = SITE, device_id: str = DEVICE) -> None:
    async with pool.acquire() as connection:
        await add_site(connection, site_id, "Europe/Prague", "Test shop")
        await enroll_device(connection, site_id, device_id, signer.public_key_bytes)


class MqttTestClient:
    """A plain MQTT client (5 unless told otherwise) for tests: publish QoS 1 and collect messages of subscribed topics."""

    def __init__(self, host: str, port: int, client_id: str = "", protocol: int = mqtt.MQTTv5) -> None:
        self.messages: dict[str, list[bytes]] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.setdefault(message.topic, []).append(message.payload)
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)

    def wait_for(self, topic: str, predicate=lambda payloads: bool(payloads), timeout_s: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self.messages.get(topic, [])):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"nothing matching on {topic}; got {self.messages.get(topic)}")
                self._cond.wait(remaining)
            return list(self.messages[topic])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)


async def enroll_with_cli(dsn: str, signer: DeviceSigner) -> None:
    for argv in (
        ["migrate", "--dsn", dsn],
        ["site", "add", SITE, "--time-zone", "Europe/Prague", "--name", "Test shop", "--dsn", dsn],
        ["device", "enroll", SITE, DEVICE, f"--public-key={signer.public_key_text}", "--dsn", dsn],
    ):
        assert await asyncio.to_thread(cli_main, argv) == 0, argv


def last_ack(client: MqttTestClient) -> int:
    payloads = client.messages.get(ACK_TOPIC) or [b'{"acked_seq": 0}']
    return decode_ack(payloads[-1])


def metric_value(text: str, sample: str, default: float | None = None) -> float:
    """The value of one sample (``name`` or ``name{labels}``) in Prometheus text.

    A labelled counter appears only once counted: pass ``default`` for those.
    """
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    if match:
        return float(match[1])
    if default is None:
        raise KeyError(f"no sample {sample} in the metrics")
    return default
