"""Turn one MQTT message into an accepted batch or a reject — never an exception.

The checks run cheapest-first and each failure has a stable reason code
(stored in ``footfall.ingest_rejects.reason``):

1. topic parse — not a v1 batch topic → ``bad_topic``
2. framing and body decoding (``shared.protocol``) → ``oversize``, ``bad_msgpack``,
   ``bad_framing``, ``unsupported_version``, ``bad_field``, ``out_of_range``
3. the signing device is enrolled → ``unknown_device``
4. the Ed25519 signature verifies → ``bad_signature``
5. site/device in the topic equal those in the signed body → ``topic_mismatch``

Decoding happens before the signature check because the signed body names
the key to verify with; the decoder is strict and bounded, so unsigned input
cannot make it do unbounded work.

Status messages (``.../status``) are parsed here too, into :class:`StatusUpdate`
with the typed :class:`DeviceHealth` fields the ``devices`` table keeps. A status
is unsigned and informational: a field of the wrong type or range is dropped
(``None``), never a reason to refuse the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.protocol import INT64_MAX, MAX_MESSAGE_BYTES, Batch, ProtocolError, decode_body, decode_status, open_message
from shared.signing import is_valid_signature
from shared.topics import parse_topic

#: Looks up the verifier of an enrolled device by (site_id, device_id); None when not enrolled.
KeyLookup = Callable[[str, str], Ed25519PublicKey | None]

_MAX_DETAIL_CHARS = 500
_MAX_STATE_CHARS = 64
INT32_MAX = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified batch, ready for the writer."""

    batch: Batch
    topic: str
    received_at_s: float
    body_sha256: bytes
    payload: bytes

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.batch.site_id, self.batch.device_id, self.batch.seq)


@dataclass(frozen=True, slots=True)
class Reject:
    """A message that will not be stored, with what is known about where it came from."""

    reason: str
    detail: str
    topic: str
    received_at_s: float
    payload_bytes: int
    payload_sha256: bytes
    site_id: str | None = None
    device_id: str | None = None
    batch_seq: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """The status fields ``devices`` keeps in columns; ``None`` = not reported (or unusable)."""

    state: str | None = None
    spool_batches: int | None = None
    spool_bytes: int | None = None
    evicted_batches: int | None = None
    evicted_events: int | None = None
    dropped_frames: int | None = None
    wifi_state: str | None = None
    camera_state: str | None = None
    #: Device clock minus our receive time; only from a status that arrived live (see ingest_status).
    clock_skew_s: float | None = None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """The latest self-reported status of a device (unsigned: informational only)."""

    site_id: str
    device_id: str
    received_at_s: float
    status_json: str
    agent_version: str | None
    health: DeviceHealth = DeviceHealth()
    #: The status arrived as it was sent (not a stored copy), so it proves the device is alive now.
    live: bool = False


@dataclass(frozen=True, slots=True)
class Precheck:
    """What a checker process (collector/checkers.py) found in a batch message."""

    #: (reason, detail) of the first problem, or None when the message decodes and every value is in range.
    error: tuple[str, str] | None
    #: The raw public key the signature verified with; None when it was not given one or it did not verify.
    signed_by: bytes | None = None


def ingest_batch(
    topic: str,
    payload: bytes,
    received_at_s: float,
    lookup: KeyLookup,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    precheck: Precheck | None = None,
) -> Accepted | Reject:
    """Check one batch message; see the module docstring for the order and the reason codes.

    ``precheck`` is what a checker process found in this payload at this
    ``received_at_s`` (collector/checkers.py): step 2 then only decodes, and
    step 4 is skipped when the signature verified with the very key the
    registry holds for the device the body names.
    """
    parsed = parse_topic(topic)
    if parsed is None or parsed.kind != "batch":
        return _reject(topic, payload, received_at_s, "bad_topic", "not a footfall/v1/{site}/{device}/batch topic")
    if len(payload) > max_message_bytes:
        detail = f"message of {len(payload)} bytes exceeds the limit of {max_message_bytes}"
        return _reject(topic, payload, received_at_s, "oversize", detail, parsed.site_id, parsed.device_id)
    try:
        if precheck is not None and precheck.error is not None:
            raise ProtocolError(*precheck.error)
        signed = open_message(payload)
        batch = decode_body(signed.body, now_s=received_at_s, values_checked=precheck is not None)
    except ProtocolError as error:
        return _reject(topic, payload, received_at_s, error.reason, error.detail, parsed.site_id, parsed.device_id)
    known = (batch.site_id, batch.device_id, batch.seq)
    verifier = lookup(batch.site_id, batch.device_id)
    if verifier is None:
        return _reject(topic, payload, received_at_s, "unknown_device", "device is not enrolled", *known)
    verified = precheck is not None and precheck.signed_by == verifier.public_bytes_raw()
    if not (verified or is_valid_signature(verifier, signed.body, signed.signature)):
        return _reject(topic, payload, received_at_s, "bad_signature", "signature does not verify", *known)
    if (parsed.site_id, parsed.device_id) != (batch.site_id, batch.device_id):
        detail = f"topic names {parsed.site_id}/{parsed.device_id}, body names {batch.site_id}/{batch.device_id}"
        return _reject(topic, payload, received_at_s, "topic_mismatch", detail, *known)
    return Accepted(batch, topic, received_at_s, hashlib.sha256(signed.body).digest(), payload)


def ingest_status(topic: str, payload: bytes, received_at_s: float, live: bool = False) -> StatusUpdate | Reject:
    """Parse a device's status message.

    ``live`` says the message came straight from the device through the broker
    (not a retained copy, not a backlog): only then does its ``at_s`` date the
    device's clock and its arrival count as the device being seen.
    """
    parsed = parse_topic(topic)
    if parsed is None or parsed.kind != "status":
        return _reject(topic, payload, received_at_s, "bad_topic", "not a footfall/v1/{site}/{device}/status topic")
    try:
        status = decode_status(payload)
        status_json: str | None = json.dumps(status, sort_keys=True, allow_nan=False)
    except ProtocolError as error:
        return _reject(topic, payload, received_at_s, error.reason, error.detail, parsed.site_id, parsed.device_id)
    except (ValueError, RecursionError):
        status_json = None
    if status_json is None or "\\u0000" in status_json:  # jsonb refuses NaN, infinity, NUL and deep nesting fails
        return _reject(
            topic, payload, received_at_s, "bad_status", "status is not storable JSON", parsed.site_id, parsed.device_id
        )
    version = status.get("agent_version")
    return StatusUpdate(
        parsed.site_id,
        parsed.device_id,
        received_at_s,
        status_json,
        version[:_MAX_DETAIL_CHARS] if isinstance(version, str) else None,
        device_health(status, received_at_s if live else None),
        live,
    )


def device_health(status: dict[str, Any], received_at_s: float | None) -> DeviceHealth:
    """Pick the typed health fields out of a status document (layout: docs/protocol.md, Status).

    ``received_at_s`` is given only for a live status; the clock skew is then
    the device's ``at_s`` minus it.
    """
    spool, wifi, camera = _section(status, "spool"), _section(status, "wifi"), _section(status, "camera")
    capture = _section(wifi, "capture")
    at_s = status.get("at_s")
    skew_s = None
    if received_at_s is not None and type(at_s) in (int, float) and math.isfinite(at_s):
        skew_s = round(at_s - received_at_s, 3)
    return DeviceHealth(
        state=_state(status.get("state")),
        spool_batches=_count(spool.get("batches"), INT32_MAX),
        spool_bytes=_count(spool.get("bytes")),
        evicted_batches=_count(spool.get("evicted_batches")),
        evicted_events=_count(spool.get("evicted_events")),
        dropped_frames=_count(capture.get("kernel_drops")),
        # Live capture knows more (missing, not_monitor_mode, …) than the source loop's own state.
        wifi_state=_state(capture.get("state")) or _state(wifi.get("state")),
        camera_state=_state(camera.get("state")),
        clock_skew_s=skew_s,
    )


def _section(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def _count(value: Any, high: int = INT64_MAX) -> int | None:
    """A non-negative integer that fits its column, else None."""
    return value if type(value) is int and 0 <= value <= high else None


def _state(value: Any) -> str | None:
    return value if isinstance(value, str) and value and len(value) <= _MAX_STATE_CHARS else None


def reject_accepted(accepted: Accepted, reason: str, detail: str) -> Reject:
    """Turn a batch that passed ingest into a reject (the writer found it unacceptable)."""
    return _reject(accepted.topic, accepted.payload, accepted.received_at_s, reason, detail, *accepted.key)


def _reject(
    topic: str,
    payload: bytes,
    received_at_s: float,
    reason: str,
    detail: str,
    site_id: str | None = None,
    device_id: str | None = None,
    batch_seq: int | None = None,
) -> Reject:
    return Reject(
        reason=reason,
        detail=_printable(detail),
        topic=_printable(topic),
        received_at_s=received_at_s,
        payload_bytes=len(payload),
        payload_sha256=hashlib.sha256(payload).digest(),
        site_id=site_id,
        device_id=device_id,
        batch_seq=batch_seq,
    )


def _printable(text: str) -> str:
    """Bounded and free of NUL, which PostgreSQL text cannot hold."""
    return text[:_MAX_DETAIL_CHARS].replace("\x00", "\\x00")
