"""The commit path: one group of messages → one PostgreSQL transaction → ack watermarks.

A group is what the consumer received in arrival order: accepted batches,
rejects and status updates. :meth:`Writer.commit` stores all of it in ONE
transaction or nothing:

1. ``ingest_batches`` gets one row per batch via ``INSERT … ON CONFLICT DO
   NOTHING RETURNING``, which tells new batches from redeliveries. A
   redelivery with the same body hash is a harmless duplicate; a different
   hash under the same sequence number is rejected as ``replayed_seq``.
2. The events of the new batches only are binary-COPYed into
   ``wifi_sightings``, ``door_crossings`` and ``passerby_counts`` (their
   partitions are created beforehand, outside the transaction), and their
   5-minute buckets are queued for the analytics task (``analytics_dirty``).
3. Rejects go to ``ingest_rejects``; status updates to ``devices``.
4. Each touched device's ``acked_seq`` advances: first to its spool floor − 1
   (the device gave up or got acks for everything below it), then upward
   over the contiguous sequence numbers present in ``ingest_batches``.
   Device rows are locked in key order so concurrent collectors cannot
   deadlock on them.

:meth:`Writer.commit_group` wraps that in the retry policy: transient
failures (database down, deadlock, connection lost) are retried with capped
exponential backoff until the group commits or the service stops; a group the
database refuses for good (a constraint the decoder did not anticipate) is
split so that only the offending message becomes a ``db_error`` reject —
never a stalled queue.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import repeat

import asyncpg

from collector.analytics.dirty import mark_dirty
from collector.db.partitions import (
    DOOR_CROSSINGS,
    PASSERBY_COUNTS,
    WIFI_SIGHTINGS,
    PartitionManager,
    epoch_days,
)
from collector.ingest import Accepted, Reject, StatusUpdate, reject_accepted
from collector.state import CollectorState, ConnectionState

log = logging.getLogger(__name__)

GroupItem = Accepted | Reject | StatusUpdate
DeviceKey = tuple[str, str]

RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0

#: Failures worth retrying unchanged: the database or the network, not the data.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.TransactionRollbackError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.PostgresSystemError,
    asyncpg.LockNotAvailableError,
    asyncpg.InvalidCachedStatementError,
)

SIGHTING_COLUMNS = (
    "site_id", "device_id", "batch_seq", "window_start", "window_s", "pseudonym", "key_epoch", "cluster", "frames",
    "rssi_max", "rssi_mean", "channel", "randomized", "fingerprint", "seq_first", "seq_last",
)  # fmt: skip
CROSSING_COLUMNS = ("site_id", "device_id", "batch_seq", "crossed_at", "line_id", "direction", "track_id")
PASSERBY_COLUMNS = ("site_id", "device_id", "batch_seq", "bucket_start", "bucket_s", "devices", "frames")

_INSERT_BATCHES = """
INSERT INTO footfall.ingest_batches (site_id, device_id, batch_seq, received_at, created_at, key_epoch,
                                     body_sha256, sightings, crossings, passersby, message_bytes)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::bigint[],
                     $7::bytea[], $8::int[], $9::int[], $10::int[], $11::int[])
ON CONFLICT DO NOTHING
RETURNING site_id, device_id, batch_seq
"""

_STORED_HASHES = """
SELECT b.site_id, b.device_id, b.batch_seq, b.body_sha256
FROM footfall.ingest_batches b
JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(site_id, device_id, batch_seq) USING (site_id, device_id, batch_seq)
"""

_INSERT_REJECTS = """
INSERT INTO footfall.ingest_rejects (received_at, topic, site_id, device_id, batch_seq, reason, detail,
                                     payload_bytes, payload_sha256)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                     $8::int[], $9::bytea[])
"""

# A health field a status leaves out keeps its last reported value (an offline will carries
# only the state); greatest() ignores NULL, so a stored status never moves last_seen_at.
_UPDATE_STATUS = """
UPDATE footfall.devices d
SET last_status = s.status,
    agent_version = coalesce(s.agent_version, d.agent_version),
    status_state = coalesce(s.state, d.status_state),
    status_received_at = s.received_at,
    last_seen_at = greatest(d.last_seen_at, s.seen_at),
    spool_batches = coalesce(s.spool_batches, d.spool_batches),
    spool_bytes = coalesce(s.spool_bytes, d.spool_bytes),
    evicted_batches = coalesce(s.evicted_batches, d.evicted_batches),
    evicted_events = coalesce(s.evicted_events, d.evicted_events),
    dropped_frames = coalesce(s.dropped_frames, d.dropped_frames),
    wifi_state = coalesce(s.wifi_state, d.wifi_state),
    camera_state = coalesce(s.camera_state, d.camera_state),
    clock_skew_s = coalesce(s.clock_skew_s, d.clock_skew_s),
    clock_skew_measured_at = CASE WHEN s.clock_skew_s IS NULL THEN d.clock_skew_measured_at ELSE s.received_at END
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[],
            $8::int[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[],
            $15::float8[])
    AS s(site_id, device_id, status, agent_version, state, received_at, seen_at,
         spool_batches, spool_bytes, evicted_batches, evicted_events, dropped_frames, wifi_state, camera_state,
         clock_skew_s)
WHERE d.site_id = s.site_id AND d.device_id = s.device_id
"""

# Key order is the lock order: two collectors touching the same devices cannot deadlock.
# NO KEY UPDATE (what the UPDATE below needs) does not conflict with the KEY SHARE
# locks that ingest_batches' foreign key takes on these rows.
_LOCK_DEVICES = """
SELECT d.site_id, d.device_id, d.acked_seq
FROM footfall.devices d
JOIN unnest($1::text[], $2::text[]) AS k(site_id, device_id) USING (site_id, device_id)
ORDER BY d.site_id, d.device_id
FOR NO KEY UPDATE OF d
"""

# Gaps and islands: above the base, seq − row_number() stays equal to the base
# for exactly the contiguous run base+1, base+2, …
_ADVANCE_DEVICES = """
WITH base AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[])
        AS b(site_id, device_id, base_seq, seen_at)
), advanced AS (
    SELECT base.site_id, base.device_id, base.seen_at, coalesce(run.top_seq, base.base_seq) AS acked_seq
    FROM base
    LEFT JOIN LATERAL (
        SELECT max(batch_seq) AS top_seq
        FROM (
            SELECT batch_seq, batch_seq - row_number() OVER (ORDER BY batch_seq) AS island
            FROM footfall.ingest_batches i
            WHERE i.site_id = base.site_id AND i.device_id = base.device_id AND i.batch_seq > base.base_seq
        ) numbered
        WHERE island = base.base_seq
    ) run ON true
)
UPDATE footfall.devices d
SET acked_seq = a.acked_seq, last_seen_at = greatest(d.last_seen_at, a.seen_at)
FROM advanced a
WHERE d.site_id = a.site_id AND d.device_id = a.device_id
RETURNING d.site_id, d.device_id, d.acked_seq
"""


class CommitAbandoned(Exception):
    """The service is stopping while the database is unavailable: the group was not committed."""


@dataclass
class CommitResult:
    """What one group did to the database; ``watermarks`` are the acks to publish."""

    watermarks: dict[DeviceKey, int] = field(default_factory=dict)
    new_batches: int = 0
    duplicates: int = 0
    status_updates: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    rejects: list[Reject] = field(default_factory=list)
    #: Device ``created_at`` of each new batch, for the latency histogram.
    created_at_s: list[float] = field(default_factory=list)

    def merge(self, other: CommitResult) -> None:
        self.watermarks.update(other.watermarks)
        self.created_at_s.extend(other.created_at_s)
        self.new_batches += other.new_batches
        self.duplicates += other.duplicates
        self.status_updates += other.status_updates
        self.rows.update(other.rows)
        self.rejects.extend(other.rejects)


class Writer:
    """Commits groups into PostgreSQL through ``pool``; reports into ``state``."""

    def __init__(self, pool: asyncpg.Pool, state: CollectorState, partitions: PartitionManager | None = None) -> None:
        self._pool = pool
        self._state = state
        self._partitions = partitions or PartitionManager()

    async def commit_group(self, items: Sequence[GroupItem], stop: asyncio.Event | None = None) -> CommitResult:
        """Commit ``items`` whatever it takes; raise :class:`CommitAbandoned` only if ``stop`` is set meanwhile."""
        try:
            return await self._commit_retrying(items, stop)
        except asyncpg.PostgresError as error:
            log.warning("commit=refused items=%d error=%s action=isolate", len(items), _one_line(error))
            self._partitions.forget()
        if len(items) > 1:
            result = CommitResult()
            for item in items:
                result.merge(await self.commit_group([item], stop))
            return result
        return await self._commit_as_db_error(items[0], stop)

    async def _commit_as_db_error(self, item: GroupItem, stop: asyncio.Event | None) -> CommitResult:
        """Store a message the database refused as a reject, so it is acked instead of retried forever."""
        if isinstance(item, Accepted):
            reject = reject_accepted(item, "db_error", "the database refused this batch; see the collector log")
        elif isinstance(item, StatusUpdate):
            log.error("status=dropped site=%s device=%s reason=db_error", item.site_id, item.device_id)
            return CommitResult()
        else:
            reject = item
        try:
            return await self._commit_retrying([reject], stop)
        except asyncpg.PostgresError as error:
            log.error("reject=dropped reason=%s error=%s", reject.reason, _one_line(error))
            return CommitResult(rejects=[reject])

    async def _commit_retrying(self, items: Sequence[GroupItem], stop: asyncio.Event | None) -> CommitResult:
        delay_s = RETRY_MIN_S
        while True:
            try:
                result = await self.commit(items)
            except TRANSIENT_ERRORS as error:
                self._state.db_errors += 1
                self._state.database = ConnectionState.DISCONNECTED
                log.warning("commit=failed error=%s retry_in_s=%.2f", _one_line(error), delay_s)
            else:
                self._state.database = ConnectionState.CONNECTED
                return result
            if stop is None:
                await asyncio.sleep(delay_s)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), delay_s)
                    raise CommitAbandoned()
                except TimeoutError:
                    pass
            delay_s = min(RETRY_MAX_S, delay_s * 2) * random.uniform(0.8, 1.2)

    async def commit(self, items: Sequence[GroupItem]) -> CommitResult:
        """One attempt: all of ``items`` in one transaction, or nothing."""
        started_s = time.perf_counter()
        accepted = [item for item in items if isinstance(item, Accepted)]
        first: dict[tuple[str, str, int], Accepted] = {}
        repeats: list[Accepted] = []
        for batch in accepted:
            if batch.key in first:
                repeats.append(batch)
            else:
                first[batch.key] = batch
        candidates = sorted(first.values(), key=lambda a: a.key)  # fixed order: fixed index lock order
        await self._ensure_partitions(candidates)

        result = CommitResult()
        async with self._pool.acquire() as connection, connection.transaction():
            inserted = await connection.fetch(_INSERT_BATCHES, *_batch_columns(candidates)) if candidates else []
            new_keys = {(r["site_id"], r["device_id"], r["batch_seq"]) for r in inserted}
            new = [a for a in candidates if a.key in new_keys]
            redelivered = [a for a in candidates if a.key not in new_keys] + repeats
            stored = await self._stored_hashes(connection, redelivered)
            for batch in redelivered:
                if stored.get(batch.key, first[batch.key].body_sha256) == batch.body_sha256:
                    result.duplicates += 1
                else:
                    detail = f"seq {batch.batch.seq} was already committed with different content"
                    result.rejects.append(reject_accepted(batch, "replayed_seq", detail))
            result.new_batches = len(new)
            result.created_at_s = [a.batch.created_at_s for a in new]
            result.rows = await self._copy_events(connection, new)
            await mark_dirty(connection, (a.batch for a in new))  # queued for analytics with the rows, or not at all
            result.rejects[:0] = [item for item in items if isinstance(item, Reject)]
            await _insert_rejects(connection, result.rejects)
            result.status_updates = await _update_statuses(connection, [i for i in items if isinstance(i, StatusUpdate)])
            replayed = {(r.site_id, r.device_id, r.batch_seq) for r in result.rejects if r.reason == "replayed_seq"}
            result.watermarks = await _advance_watermarks(connection, accepted, replayed)
        self._state.commit_groups += 1
        self._state.commit_seconds_total += time.perf_counter() - started_s
        return result

    async def _ensure_partitions(self, batches: Sequence[Accepted]) -> None:
        sightings, crossings, passersby = set(), set(), set()
        for accepted in batches:
            batch = accepted.batch
            if batch.sightings:
                sightings |= epoch_days(set(batch.sightings.column("start_s")))
            if batch.crossings:
                crossings |= epoch_days(set(batch.crossings.column("t")))
            if batch.passersby:
                passersby |= epoch_days(set(batch.passersby.column("start_s")))
        for table, days in ((WIFI_SIGHTINGS, sightings), (DOOR_CROSSINGS, crossings), (PASSERBY_COUNTS, passersby)):
            if days:
                await self._partitions.ensure(self._pool, table, days)

    @staticmethod
    async def _stored_hashes(
        connection: asyncpg.Connection, batches: Sequence[Accepted]
    ) -> dict[tuple[str, str, int], bytes]:
        if not batches:
            return {}
        keys = list(zip(*(b.key for b in batches)))
        rows = await connection.fetch(_STORED_HASHES, *keys)
        return {(r["site_id"], r["device_id"], r["batch_seq"]): bytes(r["body_sha256"]) for r in rows}

    @staticmethod
    async def _copy_events(connection: asyncpg.Connection, batches: Sequence[Accepted]) -> Counter[str]:
        rows: Counter[str] = Counter()
        copies = (
            ("wifi_sightings", SIGHTING_COLUMNS, _sighting_records, sum(len(b.batch.sightings or ()) for b in batches)),
            ("door_crossings", CROSSING_COLUMNS, _crossing_records, sum(len(b.batch.crossings or ()) for b in batches)),
            ("passerby_counts", PASSERBY_COLUMNS, _passerby_records, sum(len(b.batch.passersby or ()) for b in batches)),
        )
        for table, columns, records, count in copies:
            if count:
                await connection.copy_records_to_table(
                    table, schema_name="footfall", columns=columns, records=records(batches)
                )
                rows[table] = count
        return rows


# --------------------------------------------------------------------------- COPY records
# Built from the decoded columns with zip/map/repeat, so the per-row Python work is one tuple.


def _datetimes(epoch_seconds: Iterable[float]) -> dict[float, datetime]:
    """Convert each distinct timestamp once: events of a batch share few distinct window starts."""
    return {seconds: datetime.fromtimestamp(seconds, timezone.utc) for seconds in set(epoch_seconds)}


def _sighting_records(batches: Sequence[Accepted]) -> Iterator[tuple]:
    for accepted in batches:
        batch, block = accepted.batch, accepted.batch.sightings
        if not block:
            continue
        start_s, pseudonym, *rest = block.columns()
        times = _datetimes(start_s)
        yield from zip(
            repeat(batch.site_id), repeat(batch.device_id), repeat(batch.seq),
            map(times.__getitem__, start_s), repeat(block.window_s), pseudonym, repeat(batch.key_epoch),
            *rest,
        )  # fmt: skip


def _crossing_records(batches: Sequence[Accepted]) -> Iterator[tuple]:
    for accepted in batches:
        batch, block = accepted.batch, accepted.batch.crossings
        if not block:
            continue
        t, line, direction, track = block.columns()
        times = _datetimes(t)
        yield from zip(
            repeat(batch.site_id), repeat(batch.device_id), repeat(batch.seq),
            map(times.__getitem__, t), line, direction, track,
        )  # fmt: skip


def _passerby_records(batches: Sequence[Accepted]) -> Iterator[tuple]:
    for accepted in batches:
        batch, block = accepted.batch, accepted.batch.passersby
        if not block:
            continue
        start_s, devices, frames = block.columns()
        times = _datetimes(start_s)
        yield from zip(
            repeat(batch.site_id), repeat(batch.device_id), repeat(batch.seq),
            map(times.__getitem__, start_s), repeat(block.bucket_s), devices, frames,
        )  # fmt: skip


# --------------------------------------------------------------------------- small statements


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def _batch_columns(batches: Sequence[Accepted]) -> list[list]:
    return [
        [a.batch.site_id for a in batches],
        [a.batch.device_id for a in batches],
        [a.batch.seq for a in batches],
        [_utc(a.received_at_s) for a in batches],
        [_utc(a.batch.created_at_s) for a in batches],
        [a.batch.key_epoch for a in batches],
        [a.body_sha256 for a in batches],
        [len(a.batch.sightings or ()) for a in batches],
        [len(a.batch.crossings or ()) for a in batches],
        [len(a.batch.passersby or ()) for a in batches],
        [len(a.payload) for a in batches],
    ]


async def _insert_rejects(connection: asyncpg.Connection, rejects: Sequence[Reject]) -> None:
    if not rejects:
        return
    await connection.execute(
        _INSERT_REJECTS,
        [_utc(r.received_at_s) for r in rejects],
        [r.topic for r in rejects],
        [r.site_id for r in rejects],
        [r.device_id for r in rejects],
        [r.batch_seq for r in rejects],
        [r.reason for r in rejects],
        [r.detail for r in rejects],
        [r.payload_bytes for r in rejects],
        [r.payload_sha256 for r in rejects],
    )


async def _update_statuses(connection: asyncpg.Connection, statuses: Sequence[StatusUpdate]) -> int:
    """Apply the latest status of each device in the group; return how many were given."""
    latest = {(s.site_id, s.device_id): s for s in statuses}
    if latest:
        updates = list(latest.values())
        health = [s.health for s in updates]
        await connection.execute(
            _UPDATE_STATUS,
            [s.site_id for s in updates],
            [s.device_id for s in updates],
            [s.status_json for s in updates],
            [s.agent_version for s in updates],
            [h.state for h in health],
            [_utc(s.received_at_s) for s in updates],
            [_utc(s.received_at_s) if s.live and s.health.state == "online" else None for s in updates],
            [h.spool_batches for h in health],
            [h.spool_bytes for h in health],
            [h.evicted_batches for h in health],
            [h.evicted_events for h in health],
            [h.dropped_frames for h in health],
            [h.wifi_state for h in health],
            [h.camera_state for h in health],
            [h.clock_skew_s for h in health],
        )
    return len(statuses)


async def _advance_watermarks(
    connection: asyncpg.Connection, accepted: Sequence[Accepted], replayed: set[tuple[str | None, str | None, int | None]]
) -> dict[DeviceKey, int]:
    """Lock the touched devices in key order, advance their ``acked_seq``, return the new values."""
    floors: dict[DeviceKey, int] = {}
    seen_s: dict[DeviceKey, float] = {}
    for batch in accepted:
        device = (batch.batch.site_id, batch.batch.device_id)
        seen_s[device] = max(seen_s.get(device, 0.0), batch.received_at_s)
        if batch.key not in replayed:  # a replay's content is not what we stored: do not trust its floor
            floors[device] = max(floors.get(device, 0), batch.batch.spool_floor - 1)
    if not seen_s:
        return {}
    devices = sorted(seen_s)
    locked = await connection.fetch(_LOCK_DEVICES, [d[0] for d in devices], [d[1] for d in devices])
    current = {(r["site_id"], r["device_id"]): r["acked_seq"] for r in locked}
    devices = [d for d in devices if d in current]
    rows = await connection.fetch(
        _ADVANCE_DEVICES,
        [d[0] for d in devices],
        [d[1] for d in devices],
        [max(current[d], floors.get(d, 0)) for d in devices],
        [_utc(seen_s[d]) for d in devices],
    )
    return {(r["site_id"], r["device_id"]): r["acked_seq"] for r in rows}


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}({str(error).splitlines()[0] if str(error) else ''})"
