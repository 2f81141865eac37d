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

Status messages (``.../status``) are parsed here too, into :class:`StatusUpdate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.protocol import Batch, ProtocolError, decode_body, decode_status, open_message
from shared.signing import is_valid_signature
from shared.topics import parse_topic

#: Looks up the verifier of an enrolled device by (site_id, device_id); None when not enrolled.
KeyLookup = Callable[[str, str], Ed25519PublicKey | None]

_MAX_DETAIL_CHARS = 500


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
class StatusUpdate:
    """The latest self-reported status of a device (unsigned: informational only)."""

    site_id: str
    device_id: str
    received_at_s: float
    status_json: str
    agent_version: str | None


def ingest_batch(topic: str, payload: bytes, received_at_s: float, lookup: KeyLookup) -> Accepted | Reject:
    """Check one batch message; see the module docstring for the order and the reason codes."""
    parsed = parse_topic(topic)
    if parsed is None or parsed.kind != "batch":
        return _reject(topic, payload, received_at_s, "bad_topic", "not a footfall/v1/{site}/{device}/batch topic")
    try:
        signed = open_message(payload)
        batch = decode_body(signed.body, now_s=received_at_s)
    except ProtocolError as error:
        return _reject(topic, payload, received_at_s, error.reason, error.detail, parsed.site_id, parsed.device_id)
    known = (batch.site_id, batch.device_id, batch.seq)
    verifier = lookup(batch.site_id, batch.device_id)
    if verifier is None:
        return _reject(topic, payload, received_at_s, "unknown_device", "device is not enrolled", *known)
    if not is_valid_signature(verifier, signed.body, signed.signature):
        return _reject(topic, payload, received_at_s, "bad_signature", "signature does not verify", *known)
    if (parsed.site_id, parsed.device_id) != (batch.site_id, batch.device_id):
        detail = f"topic names {parsed.site_id}/{parsed.device_id}, body names {batch.site_id}/{batch.device_id}"
        return _reject(topic, payload, received_at_s, "topic_mismatch", detail, *known)
    return Accepted(batch, topic, received_at_s, hashlib.sha256(signed.body).digest(), payload)


def ingest_status(topic: str, payload: bytes, received_at_s: float) -> StatusUpdate | Reject:
    """Parse a device's status message."""
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
    )


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
