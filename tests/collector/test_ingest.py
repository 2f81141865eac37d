"""ingest: every kind of bad input becomes a Reject with its reason, never an exception."""

from __future__ import annotations

import json
import random

import msgpack
import pytest

from collector.ingest import Accepted, DeviceHealth, Precheck, Reject, StatusUpdate, ingest_batch, ingest_status
from collector.checkers import precheck
from shared.protocol import MAX_EVENTS_PER_BLOCK, MAX_MESSAGE_BYTES, encode_body, frame_message
from shared.signing import DeviceSigner, load_verifier
from shared.topics import batch_topic, parse_topic, status_topic
from tests.collector.collector_helpers import DEVICE, NOW_S, SITE, make_batch, sign

TOPIC = batch_topic(SITE, DEVICE)


@pytest.fixture
def lookup(signer: DeviceSigner):
    verifier = load_verifier(signer.public_key_bytes)
    return lambda site, device: verifier if (site, device) == (SITE, DEVICE) else None


def topic_key(topic: str, lookup) -> bytes | None:
    """What the service hands a checker: the key of the device the topic names."""
    parsed = parse_topic(topic)
    verifier = None if parsed is None else lookup(parsed.site_id, parsed.device_id)
    return None if verifier is None else verifier.public_bytes_raw()


def ingest_both_ways(payload: bytes, lookup, topic: str = TOPIC) -> Accepted | Reject:
    """Ingest ``payload`` checked in place and prechecked as a checker process would: the results must agree."""
    in_place = ingest_batch(topic, payload, NOW_S, lookup)
    checked = precheck(payload, NOW_S, topic_key(topic, lookup))
    assert ingest_batch(topic, payload, NOW_S, lookup, precheck=checked) == in_place
    return in_place


def reject_of(payload: bytes, lookup, topic: str = TOPIC) -> Reject:
    result = ingest_both_ways(payload, lookup, topic)
    assert isinstance(result, Reject), result
    assert result.payload_bytes == len(payload) and len(result.payload_sha256) == 32
    return result


def signed_document(document: dict, signer: DeviceSigner) -> bytes:
    """Sign an arbitrary (possibly invalid) batch document, so only its content is wrong."""
    body = msgpack.packb(document, use_bin_type=True)
    return msgpack.packb([1, body, signer.sign(body)], use_bin_type=True)


def valid_document(seq: int = 1) -> dict:
    return msgpack.unpackb(encode_body(make_batch(seq)), raw=False)


def test_valid_batch_is_accepted(signer: DeviceSigner, lookup) -> None:
    result = ingest_both_ways(sign(make_batch(7), signer), lookup)
    assert isinstance(result, Accepted)
    assert result.key == (SITE, DEVICE, 7) and len(result.body_sha256) == 32


def test_random_bytes(lookup) -> None:
    generator = random.Random(42)
    for size in (0, 1, 7, 100, 5000):
        payload = generator.randbytes(size)
        assert reject_of(payload, lookup).reason in {"bad_msgpack", "bad_framing"}


def test_truncated_msgpack(signer: DeviceSigner, lookup) -> None:
    payload = sign(make_batch(1), signer)
    assert reject_of(payload[: len(payload) // 2], lookup).reason == "bad_msgpack"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(seq="1"), "bad_field"),
        (lambda d: d["sightings"].update(frames=["3"] * 5), "bad_field"),
        (lambda d: d["sightings"].update(rssi_mean=[float("nan")] * 5), "out_of_range"),
        (lambda d: d["sightings"].update(rssi_mean=[float("inf")] * 5), "out_of_range"),
        (lambda d: d["sightings"].update(start_s=[int(NOW_S) + 86_400] * 5), "out_of_range"),
        (lambda d: d.update(created_at=NOW_S + 30 * 86_400), "out_of_range"),
        (lambda d: d["sightings"].update(rssi_max=[-300] * 5), "out_of_range"),
        (lambda d: d.update(extra=1), "bad_field"),
        (lambda d: d.update(v=2), "out_of_range"),
    ],
    ids=["str-seq", "str-frames", "nan", "inf", "future-event", "future-created", "rssi-256", "unknown-key", "body-v2"],
)
def test_bad_content_is_rejected_even_when_signed(change, reason: str, signer: DeviceSigner, lookup) -> None:
    document = valid_document()
    change(document)
    rejected = reject_of(signed_document(document, signer), lookup)
    assert rejected.reason == reason
    assert rejected.site_id == SITE  # known from the topic even when the body is unusable


def test_huge_arrays(signer: DeviceSigner, lookup) -> None:
    document = valid_document()
    document["sightings"]["frames"] = [1] * (MAX_EVENTS_PER_BLOCK + 1)
    assert reject_of(signed_document(document, signer), lookup).reason == "bad_msgpack"


def test_oversize(lookup) -> None:
    payload = msgpack.packb([1, b"x" * MAX_MESSAGE_BYTES, b"s" * 64], use_bin_type=True)
    assert reject_of(payload, lookup).reason == "oversize"


def test_unsupported_version(signer: DeviceSigner, lookup) -> None:
    body = encode_body(make_batch(1))
    payload = msgpack.packb([2, body, signer.sign(body)], use_bin_type=True)
    assert reject_of(payload, lookup).reason == "unsupported_version"


def test_bad_signature(lookup) -> None:
    rejected = reject_of(sign(make_batch(4), DeviceSigner.generate()), lookup)
    assert (rejected.reason, rejected.site_id, rejected.device_id, rejected.batch_seq) == (
        "bad_signature", SITE, DEVICE, 4,
    )  # fmt: skip


def test_tampered_body(signer: DeviceSigner, lookup) -> None:
    body = encode_body(make_batch(1))
    signature = signer.sign(body)
    tampered = encode_body(make_batch(2))
    assert reject_of(frame_message(tampered, signature), lookup).reason == "bad_signature"


def test_unknown_device(signer: DeviceSigner, lookup) -> None:
    batch = make_batch(1, device_id="stranger")
    rejected = reject_of(sign(batch, signer), lookup, batch_topic(SITE, "stranger"))
    assert (rejected.reason, rejected.device_id) == ("unknown_device", "stranger")


def test_topic_mismatch(signer: DeviceSigner, lookup) -> None:
    rejected = reject_of(sign(make_batch(1), signer), lookup, batch_topic(SITE, "other-device"))
    assert rejected.reason == "topic_mismatch"


def test_a_checker_verifying_with_the_topics_key_does_not_vouch_for_the_device_the_body_names(
    signer: DeviceSigner,
) -> None:
    """Enrolled A signs a body naming enrolled B and publishes it on A's topic: B's key must decide."""
    other = DeviceSigner.generate()
    keys = {(SITE, DEVICE): load_verifier(signer.public_key_bytes), (SITE, "b"): load_verifier(other.public_key_bytes)}
    lookup = lambda site, device: keys.get((site, device))  # noqa: E731
    payload = sign(make_batch(1, device_id="b"), signer)
    checked = precheck(payload, NOW_S, signer.public_key_bytes)
    assert checked == Precheck(None, signer.public_key_bytes)  # A's key does verify it
    rejected = ingest_batch(TOPIC, payload, NOW_S, lookup, precheck=checked)
    assert isinstance(rejected, Reject) and rejected.reason == "bad_signature"
    assert rejected == ingest_batch(TOPIC, payload, NOW_S, lookup)


@pytest.mark.parametrize("topic", ["footfall/v1/shop1/pi1/status", "elsewhere", "footfall/v2/a/b/batch", "a\x00b"])
def test_bad_topic(topic: str, signer: DeviceSigner, lookup) -> None:
    rejected = reject_of(sign(make_batch(1), signer), lookup, topic)
    assert rejected.reason == "bad_topic" and "\x00" not in rejected.topic


def test_status_messages() -> None:
    topic = status_topic(SITE, DEVICE)
    update = ingest_status(topic, b'{"v": 1, "state": "online", "agent_version": "0.1.0"}', NOW_S)
    assert isinstance(update, StatusUpdate) and update.agent_version == "0.1.0"
    for payload in (b"not json", b'{"no": "state"}', b'{"state": "x", "n": NaN}', b'{"state": "\\u0000"}', b"[" * 50_000):
        rejected = ingest_status(topic, payload, NOW_S)
        assert isinstance(rejected, Reject) and rejected.reason == "bad_status", payload[:20]


def test_mutated_messages_never_raise(signer: DeviceSigner, lookup) -> None:
    """Flip, drop and insert bytes of a valid message: every outcome is a result, not an exception."""
    original = bytearray(sign(make_batch(1), signer))
    generator = random.Random(7)
    reasons = set()
    for _ in range(3000):
        payload = bytearray(original)
        for _ in range(generator.randint(1, 4)):
            position = generator.randrange(len(payload))
            action = generator.choice(("flip", "drop", "insert"))
            if action == "flip":
                payload[position] = generator.randrange(256)
            elif action == "drop":
                del payload[position]
            else:
                payload.insert(position, generator.randrange(256))
        if payload == original:
            continue  # the mutations cancelled out
        result = ingest_both_ways(bytes(payload), lookup)
        reasons.add(result.reason if isinstance(result, Reject) else "accepted")
    assert "accepted" not in reasons  # the signature covers every byte of the body
    assert {"bad_signature", "bad_msgpack"} <= reasons


def test_configured_size_limit(signer: DeviceSigner, lookup) -> None:
    payload = sign(make_batch(1), signer)
    assert isinstance(ingest_batch(TOPIC, payload, NOW_S, lookup, max_message_bytes=len(payload)), Accepted)
    rejected = ingest_batch(TOPIC, payload, NOW_S, lookup, max_message_bytes=len(payload) - 1)
    assert isinstance(rejected, Reject) and (rejected.reason, rejected.device_id) == ("oversize", DEVICE)


def agent_status(**changes: object) -> dict:
    """A status shaped like the agent's (edge_agent/uplink.py + service.py), with ``changes`` applied."""
    status = {
        "state": "online",
        "agent_version": "0.2.0",
        "at_s": NOW_S + 42.5,
        "spool": {"batches": 3, "bytes": 4096, "oldest_seq": 7, "next_seq": 10, "evicted_batches": 2, "evicted_events": 400},
        "wifi": {"state": "capturing", "frames": 10, "capture": {"state": "not_monitor_mode", "kernel_drops": 17}},
        "camera": {"source": "device", "state": "streaming", "frames": 5},
    }
    status.update(changes)
    return status


def test_status_health_fields() -> None:
    topic = status_topic(SITE, DEVICE)
    update = ingest_status(topic, json.dumps(agent_status()).encode(), NOW_S, live=True)
    assert isinstance(update, StatusUpdate) and update.live
    assert update.health == DeviceHealth(
        state="online", spool_batches=3, spool_bytes=4096, evicted_batches=2, evicted_events=400,
        dropped_frames=17, wifi_state="not_monitor_mode", camera_state="streaming", clock_skew_s=42.5,
    )  # fmt: skip


def test_status_clock_skew_only_when_live() -> None:
    """A retained copy or a backlog may be hours old: it says nothing about the device's clock."""
    update = ingest_status(status_topic(SITE, DEVICE), json.dumps(agent_status()).encode(), NOW_S, live=False)
    assert isinstance(update, StatusUpdate) and update.health.clock_skew_s is None and not update.live
    assert update.health.spool_batches == 3


@pytest.mark.parametrize(
    "changes",
    [
        {"spool": {"batches": -1, "bytes": "4096", "evicted_batches": 1.5, "evicted_events": True}},
        {"spool": [1, 2], "wifi": "capturing", "camera": None, "at_s": "soon"},
        {"spool": {"batches": 1 << 40}, "wifi": {"state": "x" * 65}, "camera": {"state": 3}, "at_s": None},
    ],
    ids=["bad-numbers", "bad-sections", "too-large"],
)
def test_status_health_ignores_unusable_fields(changes: dict) -> None:
    update = ingest_status(status_topic(SITE, DEVICE), json.dumps(agent_status(**changes)).encode(), NOW_S, live=True)
    assert isinstance(update, StatusUpdate)  # the status itself is stored; only the unusable fields are dropped
    health = update.health
    assert (health.spool_batches, health.spool_bytes, health.evicted_batches, health.evicted_events) == (None,) * 4
    assert health.state == "online"


def test_offline_will_carries_only_the_state() -> None:
    update = ingest_status(status_topic(SITE, DEVICE), b'{"v": 1, "state": "offline", "reason": "connection lost"}', NOW_S, live=True)
    assert isinstance(update, StatusUpdate) and update.health == DeviceHealth(state="offline")
