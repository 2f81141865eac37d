"""Protocol v1: round trips, and strict bounded decoding with one error type."""

from __future__ import annotations

import base64
import math

import msgpack
import pytest

from shared.protocol import (
    MAX_MESSAGE_BYTES,
    Batch,
    CrossingRow,
    Crossings,
    PasserbyCounts,
    PasserbyRow,
    ProtocolError,
    SightingRow,
    Sightings,
    decode_ack,
    decode_body,
    encode_ack,
    encode_body,
    frame_message,
    open_message,
)
from shared.signing import DeviceSigner, decode_public_key, is_valid_signature, load_verifier
from shared.topics import ack_topic, batch_topic, parse_topic, shared_subscription

NOW_S = 1_700_000_000.0
SIGHTING = SightingRow(1_699_999_990, -42, -40, 3, -61, -63.5, 6, True, 77, 100, 140)


def _batch(**blocks) -> Batch:
    return Batch("s1", "d1", 7, NOW_S, 19_675, 5, **blocks)


def _doc(batch: Batch) -> dict:
    return msgpack.unpackb(encode_body(batch), raw=False)


def _decode(doc: dict) -> Batch:
    return decode_body(msgpack.packb(doc, use_bin_type=True), now_s=NOW_S)


def test_round_trip_with_every_block():
    batch = _batch(
        sightings=Sightings(rows=[SIGHTING, SIGHTING._replace(rssi_max=None, rssi_mean=None, seq_first=None)]),
        crossings=Crossings(rows=[CrossingRow(NOW_S - 1.5, "door-1", "in", 12)]),
        passersby=PasserbyCounts(rows=[PasserbyRow(1_699_999_800, 14, 90)], bucket_s=300),
    )
    assert decode_body(encode_body(batch), now_s=NOW_S) == batch
    assert batch.event_count == 4


def test_signed_message_round_trip_and_tamper_detection():
    signer = DeviceSigner.generate()
    body = encode_body(_batch(sightings=Sightings(rows=[SIGHTING])))
    message = frame_message(body, signer.sign(body))
    opened = open_message(message)
    verifier = load_verifier(decode_public_key(signer.public_key_text))
    assert is_valid_signature(verifier, opened.body, opened.signature)
    tampered = bytearray(opened.body)
    tampered[-1] ^= 1
    assert not is_valid_signature(verifier, bytes(tampered), opened.signature)
    assert not is_valid_signature(verifier, opened.body, opened.signature[:10])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(v=2), "out_of_range"),
        (lambda d: d.update(extra=1), "bad_field"),
        (lambda d: d.pop("seq"), "bad_field"),
        (lambda d: d.update(seq="7"), "bad_field"),
        (lambda d: d.update(seq=True), "bad_field"),
        (lambda d: d.update(site="bad/site"), "bad_field"),
        (lambda d: d.update(spool_floor=8), "out_of_range"),
        (lambda d: d.update(created_at=NOW_S + 7_200), "out_of_range"),
        (lambda d: d["sightings"].update(frames=[0]), "out_of_range"),
        (lambda d: d["sightings"].update(rssi_mean=[math.nan]), "out_of_range"),
        (lambda d: d["sightings"].update(rssi_mean=[math.inf]), "out_of_range"),
        (lambda d: d["sightings"].update(rssi_max=[15]), "out_of_range"),
        (lambda d: d["sightings"].update(start_s=[NOW_S + 86_400]), "bad_field"),
        (lambda d: d["sightings"].update(start_s=[int(NOW_S) + 86_400]), "out_of_range"),
        (lambda d: d["sightings"].update(start_s=[100]), "out_of_range"),
        (lambda d: d["sightings"].update(pseudonym=[1 << 63]), "out_of_range"),
        (lambda d: d["sightings"].update(pseudonym=[1, 2]), "bad_field"),
        (lambda d: d["sightings"].update(randomized=[1]), "bad_field"),
        (lambda d: d["sightings"].pop("channel"), "bad_field"),
        (lambda d: d.update(sightings=[1, 2]), "bad_field"),
        (lambda d: d.update(crossings={"t": [NOW_S], "line": ["x"], "direction": ["sideways"], "track": [1]}), "out_of_range"),
    ],
)
def test_strict_decoding_rejects_with_a_reason(mutate, reason):
    doc = _doc(_batch(sightings=Sightings(rows=[SIGHTING])))
    mutate(doc)
    with pytest.raises(ProtocolError) as error:
        _decode(doc)
    assert error.value.reason == reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\xc1", "bad_msgpack"),
        (b"", "bad_msgpack"),
        (msgpack.packb([1, b"x"]), "bad_framing"),
        (msgpack.packb([2, b"x", b"y"]), "unsupported_version"),
        (msgpack.packb(["1", b"x", b"y"]), "bad_framing"),
        (msgpack.packb([1, "x", b"y"]), "bad_framing"),
        (msgpack.packb([1, b"x", b"y"]) + b"\x00", "bad_msgpack"),
        (msgpack.packb(msgpack.ExtType(1, b"x")), "bad_msgpack"),
        (b"\x00" * (MAX_MESSAGE_BYTES + 1), "oversize"),
        (msgpack.packb(list(range(100_000))), "bad_msgpack"),
    ],
)
def test_framing_errors(message, reason):
    with pytest.raises(ProtocolError) as error:
        open_message(message)
    assert error.value.reason == reason


def test_truncated_body_is_bad_msgpack():
    body = encode_body(_batch(sightings=Sightings(rows=[SIGHTING] * 50)))
    with pytest.raises(ProtocolError) as error:
        decode_body(body[: len(body) // 2], now_s=NOW_S)
    assert error.value.reason == "bad_msgpack"


def test_ack_round_trip_and_rejects():
    assert decode_ack(encode_ack(42)) == 42
    for payload in (b"{}", b"[]", b'{"acked_seq": -1}', b'{"acked_seq": "3"}', b"\xff"):
        with pytest.raises(ProtocolError):
            decode_ack(payload)


def test_topics():
    assert batch_topic("s1", "d-1") == "footfall/v1/s1/d-1/batch"
    assert parse_topic(ack_topic("s1", "d1")) == ("s1", "d1", "ack")
    for bad in ("footfall/v1/s1/d1/other", "footfall/v1/s+/d1/batch", "footfall/v2/s1/d1/batch", "a/b"):
        assert parse_topic(bad) is None
    with pytest.raises(ValueError):
        batch_topic("s#", "d1")
    assert shared_subscription("footfall/v1/+/+/batch", "collectors") == "$share/collectors/footfall/v1/+/+/batch"


def test_public_key_text_never_looks_like_a_cli_option():
    for _ in range(300):
        text = DeviceSigner.generate().public_key_text
        assert not text.startswith("-")
        assert len(decode_public_key(text)) == 32
    raw = bytes(range(32))
    assert decode_public_key(base64.urlsafe_b64encode(raw).decode()) == raw
    for bad in ("", "abc", "!" * 44, base64.b64encode(bytes(31)).decode()):
        with pytest.raises(ValueError):
            decode_public_key(bad)
