"""Hostile input over a real broker, mixed with good batches, into a running collector.

Every hostile message must end up in ``ingest_rejects`` with its reason (found
by the SHA-256 of its payload), and every good batch published at the same
time must be committed — one bad message never stalls or crashes the queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass

import asyncpg
import msgpack

from collector.config import CollectorConfig
from collector.registry import enroll_device
from collector.service import CollectorService
from collector.web import render_metrics
from shared.protocol import MAX_EVENTS_PER_BLOCK, MAX_MESSAGE_BYTES, decode_ack, encode_body
from shared.signing import DeviceSigner
from shared.topics import ack_topic, batch_topic, status_topic
from tests.collector.collector_helpers import (
    DEVICE,
    SITE,
    MqttTestClient,
    enroll_with_cli,
    eventually,
    make_batch,
    metric_value,
    sighting_rows,
    sign,
)

OTHER = "pi2"
GOOD_BATCHES_PER_DEVICE = 100
DAY_S = 86_400


@dataclass(frozen=True)
class Hostile:
    """One hostile message and the reasons it may be rejected with (one, except for random bytes)."""

    name: str
    topic: str
    payload: bytes
    reasons: frozenset[str]


def hostile(name: str, payload: bytes, *reasons: str, topic: str = batch_topic(SITE, DEVICE)) -> Hostile:
    return Hostile(name, topic, payload, frozenset(reasons))


def signed_document(change, signer: DeviceSigner, seq: int = 10_000) -> bytes:
    """A batch document of pi1, altered by ``change`` and then properly signed: only its content is wrong."""
    document = msgpack.unpackb(encode_body(make_batch(seq)), raw=False)
    change(document)
    body = msgpack.packb(document, use_bin_type=True)
    return msgpack.packb([1, body, signer.sign(body)], use_bin_type=True)


def hostile_messages(signer: DeviceSigner) -> list[Hostile]:
    now_s = time.time()
    generator = random.Random(5)
    valid = sign(make_batch(10_001), signer)
    outer = msgpack.unpackb(valid, raw=False)
    flipped = bytearray(outer[2])
    flipped[0] ^= 0xFF
    messages = [
        *(hostile(f"random-{size}", generator.randbytes(size), "bad_msgpack", "bad_framing") for size in (1, 9, 300, 70_000)),
        hostile("never-used-byte", b"\xc1" + generator.randbytes(50), "bad_msgpack"),
        hostile("empty", b"", "bad_msgpack"),
        hostile("truncated", valid[: len(valid) // 2], "bad_msgpack"),
        hostile("trailing-bytes", valid + b"\x00", "bad_msgpack"),
        hostile("ext-type", msgpack.packb([1, msgpack.ExtType(5, b"x"), b""]), "bad_msgpack"),
        hostile("deep-nesting", b"\x91" * 100_000, "bad_msgpack"),
        hostile("array-header-4G", b"\xdd\xff\xff\xff\xff", "bad_msgpack"),
        hostile("not-a-triple", msgpack.packb({"v": 1}), "bad_framing"),
        hostile("body-as-text", msgpack.packb([1, "body", b"sig"], use_bin_type=True), "bad_framing"),
        hostile("version-2", msgpack.packb([2, outer[1], outer[2]], use_bin_type=True), "unsupported_version"),
        hostile("seq-as-text", signed_document(lambda d: d.update(seq="7"), signer), "bad_field"),
        hostile("frames-as-text", signed_document(lambda d: d["sightings"].update(frames=["3"] * 5), signer), "bad_field"),
        hostile("unequal-columns", signed_document(lambda d: d["sightings"].update(channel=[6]), signer), "bad_field"),
        hostile("unknown-key", signed_document(lambda d: d.update(admin=True), signer), "bad_field"),
        hostile("nan", signed_document(lambda d: d["sightings"].update(rssi_mean=[float("nan")] * 5), signer), "out_of_range"),
        hostile("infinity", signed_document(lambda d: d["sightings"].update(rssi_mean=[float("inf")] * 5), signer), "out_of_range"),
        hostile("minus-infinity", signed_document(lambda d: d.update(created_at=float("-inf")), signer), "out_of_range"),
        hostile("rssi-minus-256", signed_document(lambda d: d["sightings"].update(rssi_max=[-256] * 5), signer), "out_of_range"),
        hostile("future-batch", signed_document(lambda d: d.update(created_at=now_s + 30 * DAY_S), signer), "out_of_range"),
        hostile(
            "future-events",
            signed_document(lambda d: d["sightings"].update(start_s=[int(now_s) + DAY_S] * 5), signer),
            "out_of_range",
        ),
        hostile(
            "huge-column",
            signed_document(lambda d: d["sightings"].update(frames=[1] * (MAX_EVENTS_PER_BLOCK + 1)), signer),
            "bad_msgpack",
        ),
        hostile("oversize", msgpack.packb([1, b"x" * MAX_MESSAGE_BYTES, b"s" * 64]), "oversize"),
        hostile("flipped-signature", msgpack.packb([1, outer[1], bytes(flipped)], use_bin_type=True), "bad_signature"),
        hostile("foreign-key", sign(make_batch(10_002), DeviceSigner.generate()), "bad_signature"),
        hostile(
            "unknown-device",
            sign(make_batch(1, device_id="intruder"), DeviceSigner.generate()),
            "unknown_device",
            topic=batch_topic(SITE, "intruder"),
        ),
        hostile("topic-mismatch", sign(make_batch(10_003), signer), "topic_mismatch", topic=batch_topic(SITE, OTHER)),
        hostile("bad-topic-id", valid, "bad_topic", topic="footfall/v1/shop 1!/pi1/batch"),
        hostile("status-not-json", b"\xff\xfe{", "bad_status", topic=status_topic(SITE, OTHER)),
    ]
    assert len({m.payload for m in messages}) == len(messages), "payloads must differ to be told apart"
    return messages


def good_batches(signer: DeviceSigner, device_id: str) -> list[tuple[str, bytes]]:
    topic = batch_topic(SITE, device_id)
    return [(topic, sign(make_batch(seq, device_id=device_id), signer)) for seq in range(1, GOOD_BATCHES_PER_DEVICE + 1)]


def all_acked(payloads: list[bytes]) -> bool:
    return max(map(decode_ack, payloads), default=0) == GOOD_BATCHES_PER_DEVICE


def publish_all(client: MqttTestClient, messages: list[tuple[str, bytes]]) -> None:
    for topic, payload in messages:
        client.publish(topic, payload)


async def test_hostile_input_is_rejected_with_reasons_while_good_batches_commit(
    config: CollectorConfig, signer: DeviceSigner
) -> None:
    dsn = config.database.dsn
    await enroll_with_cli(dsn, signer)
    other = DeviceSigner.generate()
    connection = await asyncpg.connect(dsn)
    try:
        await enroll_device(connection, SITE, OTHER, other.public_key_bytes)
    finally:
        await connection.close()
    attacks = hostile_messages(signer)
    good = good_batches(signer, DEVICE) + good_batches(other, OTHER)
    random.Random(1).shuffle(good)
    # Replays reuse committed seqs with other content; they go last, once the originals are acked.
    replays = [
        hostile(
            f"replayed-seq-{seq}",
            sign(make_batch(seq, sightings=sighting_rows(7, 1_774_871_000, 90_000 + seq)), signer),
            "replayed_seq",
        )
        for seq in (1, GOOD_BATCHES_PER_DEVICE)
    ]
    good_client = MqttTestClient(config.mqtt.host, config.mqtt.port)
    hostile_client = MqttTestClient(config.mqtt.host, config.mqtt.port)
    acks = MqttTestClient(config.mqtt.host, config.mqtt.port)
    for device_id in (DEVICE, OTHER):
        acks.subscribe(ack_topic(SITE, device_id))
    try:
        async with CollectorService(config, migrate=False) as service:
            await eventually(lambda: service.state.ready)
            await asyncio.gather(
                asyncio.to_thread(publish_all, good_client, good),
                asyncio.to_thread(publish_all, hostile_client, [(m.topic, m.payload) for m in attacks]),
            )
            for device_id in (DEVICE, OTHER):
                await asyncio.to_thread(acks.wait_for, ack_topic(SITE, device_id), all_acked, 30)
            await asyncio.to_thread(publish_all, hostile_client, [(m.topic, m.payload) for m in replays])
            expected = attacks + replays
            await eventually(lambda: sum(service.state.rejected.values()) == len(expected), timeout_s=30)
            await eventually(lambda: service.state.pending_messages == 0)
            assert service.state.ready and not service.failed
            metrics = render_metrics(service.state)
    finally:
        for client in (good_client, hostile_client, acks):
            client.close()

    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT reason, topic, payload_sha256 FROM footfall.ingest_rejects")
        stored = {bytes(r["payload_sha256"]): (r["reason"], r["topic"]) for r in rows}
        assert len(rows) == len(stored) == len(expected)
        for message in expected:
            reason, topic = stored[hashlib.sha256(message.payload).digest()]
            assert reason in message.reasons, (message.name, reason)
            assert topic == message.topic
        committed = await connection.fetchrow(
            "SELECT count(*) AS batches, sum(sightings) AS sightings FROM footfall.ingest_batches"
        )
        assert tuple(committed) == (2 * GOOD_BATCHES_PER_DEVICE, 2 * GOOD_BATCHES_PER_DEVICE * 5)
        assert await connection.fetchval("SELECT count(*) FROM footfall.wifi_sightings") == committed["sightings"]
        acked = await connection.fetch("SELECT device_id, acked_seq FROM footfall.devices ORDER BY device_id")
        assert [tuple(r) for r in acked] == [(DEVICE, 100), (OTHER, 100)]
        by_reason = await connection.fetch("SELECT reason, count(*) AS n FROM footfall.ingest_rejects GROUP BY reason")
    finally:
        await connection.close()
    for row in by_reason:  # /metrics tells the same story as the table
        assert metric_value(metrics, f'footfall_collector_rejected_total{{reason="{row["reason"]}"}}') == row["n"]
