"""Wire protocol v1: the signed, bounded msgpack batch a device sends.

A message on ``footfall/v1/{site}/{device}/batch`` is the msgpack array
``[1, body, signature]``: ``body`` is the msgpack-encoded batch document and
``signature`` the device's Ed25519 signature over exactly those bytes, so the
collector verifies what it decodes. Events travel column-wise (one list per
field) because that is compact and lets the collector check a whole column's
types and ranges in one pass before COPYing it. See docs/protocol.md.

Decoding is strict: unknown keys, wrong types, NaN, infinities, values out of
range, oversize documents and ext types all raise :class:`ProtocolError`,
whose ``reason`` is a short stable code the collector stores in
``ingest_rejects``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, NamedTuple

import msgpack

from shared.topics import is_valid_id

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20
MAX_EVENTS_PER_BLOCK = 20_000
#: Earliest event time accepted (2000-01-01 UTC): older is a broken clock.
MIN_TIME_S = 946_684_800
#: How far ahead of the collector's clock an event may be.
MAX_FUTURE_SKEW_S = 3_600.0
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class ProtocolError(Exception):
    """A message that cannot be accepted; ``reason`` is a stable short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- events


class SightingRow(NamedTuple):
    """One pseudonymous device within one window, as the edge aggregates it."""

    start_s: int
    pseudonym: int
    #: The physical device: the pseudonym of the first MAC the edge's linker attributed to it.
    cluster: int
    frames: int
    rssi_max: int | None
    rssi_mean: float | None
    channel: int
    randomized: bool
    fingerprint: int
    seq_first: int | None
    seq_last: int | None


class CrossingRow(NamedTuple):
    """One person crossing one counting line."""

    t: float
    line: str
    direction: str
    track: int


class PasserbyRow(NamedTuple):
    """Count of devices heard below the visitor band in one bucket, without pseudonyms."""

    start_s: int
    devices: int
    frames: int


@dataclass(frozen=True)
class Column:
    """Type and range of one event field; ``None`` allowed when ``nullable``."""

    kind: type
    low: float | None = None
    high: float | None = None
    nullable: bool = False
    choices: frozenset[str] | None = None
    is_time: bool = False


class ColumnRows(Sequence[tuple]):
    """The rows of a decoded block, kept as the columns they arrived in.

    The collector COPYs columns, so building a named tuple per row only to take
    the rows apart again would be most of its decoding work. Rows are made on
    demand, for code that iterates or indexes them; ``columns`` is free.
    """

    __slots__ = ("columns", "_row")

    def __init__(self, row: type, columns: list[list]) -> None:
        self._row = row
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    def __iter__(self) -> Iterator[tuple]:
        return map(partial(tuple.__new__, self._row), zip(*self.columns))

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self)[index]
        return self._row._make(column[index] for column in self.columns)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"ColumnRows({list(self)!r})"


@dataclass(frozen=True)
class EventBlock:
    """Events of one type plus the block's scalar parameters.

    ``rows`` is a list of row tuples where blocks are built (the edge), or a
    :class:`ColumnRows` where they are decoded (the collector); either way
    :meth:`columns` gives one sequence per field.
    """

    rows: Sequence[tuple]
    ROW: ClassVar[type]
    COLUMNS: ClassVar[dict[str, Column]]
    SCALARS: ClassVar[dict[str, Column]] = {}
    KEY: ClassVar[str]

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> list[Sequence]:
        """One sequence of values per field, in ``COLUMNS`` order."""
        if isinstance(self.rows, ColumnRows):
            return self.rows.columns
        return list(zip(*self.rows)) if self.rows else [() for _ in self.COLUMNS]

    def column(self, name: str) -> Sequence:
        """The values of one field, e.g. ``block.column("start_s")``."""
        return self.columns()[list(self.COLUMNS).index(name)]

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {name: getattr(self, name) for name in self.SCALARS}
        for name, values in zip(self.COLUMNS, self.columns()):
            doc[name] = list(values)
        return doc


@dataclass(frozen=True)
class Sightings(EventBlock):
    window_s: int = 10
    ROW: ClassVar[type] = SightingRow
    KEY: ClassVar[str] = "sightings"
    SCALARS: ClassVar[dict[str, Column]] = {"window_s": Column(int, 1, 3_600)}
    COLUMNS: ClassVar[dict[str, Column]] = {
        "start_s": Column(int, MIN_TIME_S, None, is_time=True),
        "pseudonym": Column(int, INT64_MIN, INT64_MAX),
        "cluster": Column(int, INT64_MIN, INT64_MAX),
        "frames": Column(int, 1, 1_000_000),
        "rssi_max": Column(int, -120, 0, nullable=True),
        "rssi_mean": Column(float, -120.0, 0.0, nullable=True),
        "channel": Column(int, 0, 255),
        "randomized": Column(bool),
        "fingerprint": Column(int, 0, (1 << 32) - 1),
        "seq_first": Column(int, 0, 4_095, nullable=True),
        "seq_last": Column(int, 0, 4_095, nullable=True),
    }


@dataclass(frozen=True)
class Crossings(EventBlock):
    ROW: ClassVar[type] = CrossingRow
    KEY: ClassVar[str] = "crossings"
    COLUMNS: ClassVar[dict[str, Column]] = {
        "t": Column(float, MIN_TIME_S, None, is_time=True),
        "line": Column(str),
        "direction": Column(str, choices=frozenset({"in", "out"})),
        "track": Column(int, 0, INT64_MAX),
    }


@dataclass(frozen=True)
class PasserbyCounts(EventBlock):
    bucket_s: int = 300
    ROW: ClassVar[type] = PasserbyRow
    KEY: ClassVar[str] = "passersby"
    SCALARS: ClassVar[dict[str, Column]] = {"bucket_s": Column(int, 1, 86_400)}
    COLUMNS: ClassVar[dict[str, Column]] = {
        "start_s": Column(int, MIN_TIME_S, None, is_time=True),
        "devices": Column(int, 0, 1_000_000),
        "frames": Column(int, 0, 1_000_000_000),
    }


BLOCK_TYPES: tuple[type[EventBlock], ...] = (Sightings, Crossings, PasserbyCounts)


# --------------------------------------------------------------------------- batch


@dataclass(frozen=True)
class Batch:
    """One signed unit of upload; (site_id, device_id, seq) is its idempotency key."""

    site_id: str
    device_id: str
    seq: int
    created_at_s: float
    key_epoch: int
    #: Smallest seq still in the device's spool: every lower seq is committed or given up.
    spool_floor: int
    sightings: Sightings | None = None
    crossings: Crossings | None = None
    passersby: PasserbyCounts | None = None

    @property
    def event_count(self) -> int:
        return sum(len(block) for block in self.blocks())

    def blocks(self) -> list[EventBlock]:
        return [b for b in (self.sightings, self.crossings, self.passersby) if b is not None]


_HEADER: dict[str, Column] = {
    "v": Column(int, PROTOCOL_VERSION, PROTOCOL_VERSION),
    "site": Column(str),
    "device": Column(str),
    "seq": Column(int, 1, INT64_MAX),
    "created_at": Column(float, MIN_TIME_S, None, is_time=True),
    "key_epoch": Column(int, 0, INT64_MAX),
    "spool_floor": Column(int, 1, INT64_MAX),
}


def encode_body(batch: Batch) -> bytes:
    """The msgpack document that gets signed."""
    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "site": batch.site_id,
        "device": batch.device_id,
        "seq": batch.seq,
        "created_at": float(batch.created_at_s),
        "key_epoch": batch.key_epoch,
        "spool_floor": batch.spool_floor,
    }
    for block in batch.blocks():
        doc[block.KEY] = block.to_document()
    return msgpack.packb(doc, use_bin_type=True)


def frame_message(body: bytes, signature: bytes) -> bytes:
    """Wrap a signed body into the bytes published on the batch topic."""
    message = msgpack.packb([PROTOCOL_VERSION, body, signature], use_bin_type=True)
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError("oversize", f"message of {len(message)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return message


class SignedBody(NamedTuple):
    body: bytes
    signature: bytes


def open_message(message: bytes) -> SignedBody:
    """Check the outer framing and return the body and its signature, not yet verified."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError("oversize", f"message of {len(message)} bytes exceeds {MAX_MESSAGE_BYTES}")
    outer = _unpack(message)
    if not isinstance(outer, list) or len(outer) != 3:
        raise ProtocolError("bad_framing", "expected [version, body, signature]")
    version, body, signature = outer
    if type(version) is not int:
        raise ProtocolError("bad_framing", "version must be an integer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version", f"version {version}; this collector speaks {PROTOCOL_VERSION}")
    if not isinstance(body, bytes) or not isinstance(signature, bytes):
        raise ProtocolError("bad_framing", "body and signature must be binary")
    return SignedBody(body, signature)


def decode_body(body: bytes, now_s: float | None = None, values_checked: bool = False) -> Batch:
    """Decode and validate a batch document; ``now_s`` bounds timestamps from above.

    ``values_checked``: a full decode already passed these very bytes (in a
    checker process of the collector), so the per-value checks of the event
    columns — most of the decoding time — are skipped; the document's shape is
    still checked.
    """
    doc = _unpack(body)
    if not isinstance(doc, dict):
        raise ProtocolError("bad_field", "batch must be a map")
    max_time_s = None if now_s is None else now_s + MAX_FUTURE_SKEW_S
    block_keys = {block.KEY: block for block in BLOCK_TYPES}
    unknown = set(doc) - set(_HEADER) - set(block_keys)
    if unknown:
        raise ProtocolError("bad_field", f"unknown keys {sorted(map(str, unknown))[:5]}")
    header = {name: _scalar(doc, name, column, max_time_s) for name, column in _HEADER.items()}
    for key in ("site", "device"):
        if not is_valid_id(header[key]):
            raise ProtocolError("bad_field", f"{key} id is not [A-Za-z0-9_-]{{1,64}}")
    if header["spool_floor"] > header["seq"]:
        raise ProtocolError("out_of_range", "spool_floor is above seq")
    blocks = {
        block.KEY: _decode_block(block, doc[block.KEY], max_time_s, values_checked)
        for block in BLOCK_TYPES
        if block.KEY in doc
    }
    return Batch(
        site_id=header["site"],
        device_id=header["device"],
        seq=header["seq"],
        created_at_s=header["created_at"],
        key_epoch=header["key_epoch"],
        spool_floor=header["spool_floor"],
        **blocks,
    )


def _unpack(data: bytes) -> Any:
    def reject_ext(code: int, _data: bytes) -> Any:
        raise ProtocolError("bad_msgpack", f"ext type {code} is not allowed")

    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            ext_hook=reject_ext,
            max_array_len=MAX_EVENTS_PER_BLOCK,
            max_map_len=64,
            max_str_len=256,
            max_bin_len=MAX_MESSAGE_BYTES,
        )
    except ProtocolError:
        raise
    except msgpack.ExtraData:
        raise ProtocolError("bad_msgpack", "trailing bytes after the document") from None
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise ProtocolError("bad_msgpack", str(exc)[:200] or type(exc).__name__) from None


def _decode_block(block: type[EventBlock], doc: Any, max_time_s: float | None, values_checked: bool) -> EventBlock:
    where = block.KEY
    if not isinstance(doc, dict):
        raise ProtocolError("bad_field", f"{where} must be a map of columns")
    expected = set(block.COLUMNS) | set(block.SCALARS)
    if set(doc) != expected:
        missing, extra = expected - set(doc), set(doc) - expected
        raise ProtocolError("bad_field", f"{where}: missing {sorted(missing)}, unknown {sorted(map(str, extra))}")
    scalars = {name: _scalar(doc, name, column, max_time_s, where) for name, column in block.SCALARS.items()}
    columns = [doc[name] for name in block.COLUMNS]
    length = len(columns[0]) if isinstance(columns[0], list) else -1
    for name, values in zip(block.COLUMNS, columns):
        if not isinstance(values, list) or len(values) != length:
            raise ProtocolError("bad_field", f"{where}.{name} must be a list as long as the other columns")
        if not values_checked:
            _check_column(values, block.COLUMNS[name], max_time_s, f"{where}.{name}")
    return block(rows=ColumnRows(block.ROW, columns), **scalars)


def _scalar(doc: dict, name: str, column: Column, max_time_s: float | None, where: str = "batch") -> Any:
    if name not in doc:
        raise ProtocolError("bad_field", f"{where}: missing {name}")
    value = doc[name]
    _check_column([value], column, max_time_s, f"{where}.{name}")
    return value


#: Exact types a column of each kind accepts (``type(v) is …``: a bool is not an int here).
_ACCEPTED_TYPES: dict[type, frozenset[type]] = {
    int: frozenset({int}),
    float: frozenset({float, int}),
    bool: frozenset({bool}),
    str: frozenset({str}),
}
_NONE_TYPE = type(None)


def _check_column(values: list, column: Column, max_time_s: float | None, where: str) -> None:
    # The collector checks every value it receives, so the common (valid) case runs on
    # builtins that loop in C — set(map(type)), min, max — and the per-value Python loop
    # only runs to name the first bad value.
    kinds = set(map(type, values))
    present = values
    if column.nullable and _NONE_TYPE in kinds:
        kinds.discard(_NONE_TYPE)
        present = [v for v in values if v is not None]
    kind = column.kind
    if not kinds <= _ACCEPTED_TYPES[kind]:
        raise ProtocolError("bad_field", f"{where}: expected numbers" if kind is float else f"{where}: expected {kind.__name__} values")
    if kind is str:
        allowed = column.choices
        distinct = set(present)
        if allowed is not None and not distinct <= allowed:
            raise ProtocolError("out_of_range", f"{where}: expected one of {sorted(allowed)}")
        if allowed is None and not all(map(is_valid_id, distinct)):
            raise ProtocolError("bad_field", f"{where}: expected IDs of [A-Za-z0-9_-]{{1,64}}")
        return
    if kind is bool or not present:
        return
    high = column.high
    if column.is_time and max_time_s is not None:
        high = max_time_s
    low = column.low if column.low is not None else -math.inf
    high = high if high is not None else math.inf
    # min and max are only meaningful without NaN, so NaN takes the slow path, where the
    # chained comparison (False for NaN) names it.
    if (kind is float and any(map(math.isnan, present))) or not (low <= min(present) and max(present) <= high):
        bad = next(v for v in present if not low <= v <= high)
        detail = "in the future" if column.is_time and bad > low else f"outside [{low}, {high}]"
        raise ProtocolError("out_of_range", f"{where}: value {bad!r} {detail}")


# --------------------------------------------------------------------------- control


def encode_ack(acked_seq: int) -> bytes:
    """Collector → device: every batch with seq ≤ ``acked_seq`` is committed (or given up)."""
    return json.dumps({"v": PROTOCOL_VERSION, "acked_seq": acked_seq}).encode()


def decode_ack(payload: bytes) -> int:
    try:
        doc = json.loads(payload)
        acked = doc["acked_seq"]
    except (ValueError, KeyError, TypeError):
        raise ProtocolError("bad_ack", "expected JSON {\"acked_seq\": N}") from None
    if type(acked) is not int or acked < 0:
        raise ProtocolError("bad_ack", "acked_seq must be a non-negative integer")
    return acked


def encode_status(status: dict[str, Any]) -> bytes:
    """Device status (retained; the last will says offline). JSON so operators can read it."""
    return json.dumps({"v": PROTOCOL_VERSION, **status}, sort_keys=True, allow_nan=False).encode()


def decode_status(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except ValueError:
        raise ProtocolError("bad_status", "status must be JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("state"), str):
        raise ProtocolError("bad_status", "status must be a JSON object with a state")
    return doc


def block_of_rows(block: type[EventBlock], rows: Sequence[tuple], **scalars: Any) -> EventBlock | None:
    """Build a block from row tuples, or ``None`` when there are no rows."""
    return block(rows=list(rows), **scalars) if rows else None
