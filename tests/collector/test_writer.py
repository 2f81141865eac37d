"""Writer: atomic groups, idempotent redelivery, replay detection, ack watermarks, partitions."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from collector.db.partitions import WIFI_SIGHTINGS, PartitionManager
from collector.db.writer import Writer
from collector.ingest import DeviceHealth, Reject, StatusUpdate, ingest_batch
from collector.state import CollectorState
from shared.protocol import CrossingRow, PasserbyRow
from shared.signing import DeviceSigner
from tests.collector.collector_helpers import DEVICE, NOW_S, SITE, accepted, enroll, make_batch, sighting_rows

DAY_S = 86_400


@pytest.fixture
def writer(db: asyncpg.Pool) -> Writer:
    return Writer(db, CollectorState())


async def count(db: asyncpg.Pool, table: str) -> int:
    return await db.fetchval(f"SELECT count(*) FROM footfall.{table}")


async def acked_seq(db: asyncpg.Pool, device_id: str = DEVICE) -> int:
    return await db.fetchval(
        "SELECT acked_seq FROM footfall.devices WHERE site_id = $1 AND device_id = $2", SITE, device_id
    )


async def test_group_commits_all_event_kinds(writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    batch = make_batch(
        1,
        sightings=sighting_rows(300, int(NOW_S) - 30),
        crossings=[CrossingRow(NOW_S - 5.25, "door", "in", 11), CrossingRow(NOW_S - 1, "door", "out", 12)],
        passersby=[PasserbyRow(int(NOW_S) - 300, 17, 250)],
    )
    result = await writer.commit_group([accepted(batch, enrolled)])
    assert result.new_batches == 1 and result.watermarks == {(SITE, DEVICE): 1}
    assert dict(result.rows) == {"wifi_sightings": 300, "door_crossings": 2, "passerby_counts": 1}
    row = await db.fetchrow("SELECT * FROM footfall.wifi_sightings ORDER BY pseudonym LIMIT 1")
    assert (row["site_id"], row["batch_seq"], row["window_s"], row["key_epoch"], row["frames"]) == (SITE, 1, 10, 3, 3)
    assert row["window_start"].timestamp() == (int(NOW_S) - 30) // 10 * 10
    linked = await db.fetch("SELECT pseudonym, cluster FROM footfall.wifi_sightings ORDER BY pseudonym LIMIT 4")
    assert [tuple(r) for r in linked] == [(0, 0), (1, 0), (2, 0), (3, 3)]  # the cluster column lands beside its MAC
    crossing = await db.fetchrow("SELECT * FROM footfall.door_crossings ORDER BY crossed_at LIMIT 1")
    assert crossing["crossed_at"].timestamp() == NOW_S - 5.25 and crossing["direction"] == "in"
    ledger = await db.fetchrow("SELECT * FROM footfall.ingest_batches")
    assert (ledger["sightings"], ledger["crossings"], ledger["passersby"]) == (300, 2, 1)


async def test_same_batch_twice_is_stored_once(writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    batch = accepted(make_batch(1), enrolled)
    redelivered = accepted(make_batch(1), enrolled, received_at_s=NOW_S + 5)
    in_group = await writer.commit_group([batch, redelivered])
    later = await writer.commit_group([redelivered])
    assert (in_group.new_batches, in_group.duplicates, later.new_batches, later.duplicates) == (1, 1, 0, 1)
    assert await count(db, "wifi_sightings") == 5
    assert await count(db, "ingest_rejects") == 0


async def test_replayed_seq_with_other_content_is_rejected(
    writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner
) -> None:
    await writer.commit_group([accepted(make_batch(1), enrolled)])
    replay = make_batch(1, sightings=sighting_rows(9, int(NOW_S) - 60, 500))
    result = await writer.commit_group([accepted(replay, enrolled)])
    assert [r.reason for r in result.rejects] == ["replayed_seq"]
    assert await count(db, "wifi_sightings") == 5
    row = await db.fetchrow("SELECT site_id, device_id, batch_seq, reason FROM footfall.ingest_rejects")
    assert tuple(row) == (SITE, DEVICE, 1, "replayed_seq")


async def test_watermark_advances_over_contiguous_seqs_only(
    writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner
) -> None:
    result = await writer.commit_group([accepted(make_batch(s), enrolled) for s in (1, 2, 4)])
    assert result.watermarks == {(SITE, DEVICE): 2} and await acked_seq(db) == 2
    result = await writer.commit_group([accepted(make_batch(3), enrolled)])
    assert result.watermarks == {(SITE, DEVICE): 4}
    # An old duplicate never moves the watermark back.
    assert (await writer.commit_group([accepted(make_batch(1), enrolled)])).watermarks == {(SITE, DEVICE): 4}


async def test_watermark_jumps_over_the_spool_floor(writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    await writer.commit_group([accepted(make_batch(s), enrolled) for s in (1, 2)])
    # The device gave up on 3..7 (its spool floor is 8) and sends 9 first, then 8.
    result = await writer.commit_group([accepted(make_batch(9, spool_floor=8), enrolled)])
    assert result.watermarks == {(SITE, DEVICE): 7}
    result = await writer.commit_group([accepted(make_batch(8, spool_floor=8), enrolled)])
    assert result.watermarks == {(SITE, DEVICE): 9}


async def test_failed_group_leaves_nothing_behind(writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    good = accepted(make_batch(1), enrolled)
    # Passes ingest (the cached key verifies) but its device is not in the database: a foreign key violation.
    orphan = accepted(make_batch(1, device_id="ghost"), enrolled)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await writer.commit([good, orphan])
    assert await count(db, "ingest_batches") == 0 and await count(db, "wifi_sightings") == 0
    assert await acked_seq(db) == 0
    # commit_group isolates the message the database refuses; the rest of the group commits.
    result = await writer.commit_group([good, orphan])
    assert result.new_batches == 1 and [r.reason for r in result.rejects] == ["db_error"]
    assert await count(db, "wifi_sightings") == 5 and await acked_seq(db) == 1


async def test_rejects_and_statuses_are_stored(writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    junk = ingest_batch(f"footfall/v1/{SITE}/{DEVICE}/batch", b"\xc1junk", NOW_S, lambda s, d: None)
    assert isinstance(junk, Reject)
    status = StatusUpdate(SITE, DEVICE, NOW_S, '{"state": "online", "v": 1}', "0.1.0")
    result = await writer.commit_group([junk, status, accepted(make_batch(1), enrolled)])
    assert [r.reason for r in result.rejects] == ["bad_msgpack"] and result.status_updates == 1
    reject = await db.fetchrow("SELECT * FROM footfall.ingest_rejects")
    assert (reject["reason"], reject["payload_bytes"], reject["site_id"]) == ("bad_msgpack", 5, SITE)
    device = await db.fetchrow("SELECT * FROM footfall.devices")
    assert device["agent_version"] == "0.1.0" and '"online"' in device["last_status"]
    assert device["last_seen_at"].timestamp() == NOW_S


async def test_partitions_are_created_on_demand(writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    day = int(NOW_S) // DAY_S * DAY_S
    rows = [r for offset in range(4) for r in sighting_rows(3, day - offset * DAY_S + 600, offset * 100)]
    crossings = [CrossingRow(day - 40 * DAY_S, "door", "in", 1), CrossingRow(float(day), "door", "out", 1)]
    await writer.commit_group([accepted(make_batch(1, sightings=rows, crossings=crossings), enrolled)])
    names = {
        r["relname"]
        for r in await db.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent IN ('footfall.wifi_sightings'::regclass, 'footfall.door_crossings'::regclass)"
        )
    }
    assert names == {
        "wifi_sightings_p20260327", "wifi_sightings_p20260328", "wifi_sightings_p20260329",
        "wifi_sightings_p20260330", "door_crossings_p202602", "door_crossings_p202603",
    }  # fmt: skip
    assert await count(db, "wifi_sightings") == 12


async def test_partition_creation_races_safely(db: asyncpg.Pool) -> None:
    days = range(20_000, 20_010)
    await asyncio.gather(*(PartitionManager().ensure(db, WIFI_SIGHTINGS, days) for _ in range(4)))
    assert await db.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'footfall.wifi_sightings'::regclass"
    ) == 10


async def test_devices_of_several_sites(writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    other = DeviceSigner.generate()
    await enroll(db, other, site_id="shop2", device_id="pi9")
    group = [
        accepted(make_batch(1), enrolled),
        accepted(make_batch(1, site_id="shop2", device_id="pi9"), other),
        accepted(make_batch(2, site_id="shop2", device_id="pi9"), other),
    ]
    result = await writer.commit_group(group)
    assert result.watermarks == {(SITE, DEVICE): 1, ("shop2", "pi9"): 2}


async def test_concurrent_writers_store_each_batch_once(db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    """Collectors on a shared subscription may commit overlapping redeliveries at the same time."""
    other = DeviceSigner.generate()
    await enroll(db, other, device_id="pi2")
    batches = [accepted(make_batch(seq), enrolled) for seq in range(1, 21)]
    batches += [accepted(make_batch(seq, device_id="pi2"), other) for seq in range(1, 21)]
    orders = [batches, batches[::-1], batches[::2] + batches[1::2], batches[20:] + batches[:20]]
    states = [CollectorState() for _ in orders]
    results = await asyncio.gather(*(Writer(db, s).commit_group(order) for s, order in zip(states, orders)))
    assert sum(r.new_batches for r in results) == 40 and sum(r.duplicates for r in results) == 120
    assert await count(db, "wifi_sightings") == 200
    assert await acked_seq(db) == 20 and await acked_seq(db, "pi2") == 20


async def test_status_fills_the_device_health_columns(writer: Writer, db: asyncpg.Pool, enrolled: DeviceSigner) -> None:
    online = StatusUpdate(
        SITE, DEVICE, NOW_S, '{"state": "online"}', "0.2.0",
        DeviceHealth("online", 3, 4096, 2, 400, 17, "capturing", "streaming", clock_skew_s=-1.5), live=True,
    )  # fmt: skip
    await writer.commit_group([online])
    device = await db.fetchrow("SELECT * FROM footfall.devices")
    assert (device["status_state"], device["spool_batches"], device["spool_bytes"]) == ("online", 3, 4096)
    assert (device["evicted_batches"], device["evicted_events"], device["dropped_frames"]) == (2, 400, 17)
    assert (device["wifi_state"], device["camera_state"], device["clock_skew_s"]) == ("capturing", "streaming", -1.5)
    assert device["last_seen_at"].timestamp() == device["clock_skew_measured_at"].timestamp() == NOW_S

    # The last will says only "offline": the last reported numbers stay, and it does not count as seen.
    will = StatusUpdate(SITE, DEVICE, NOW_S + 60, '{"state": "offline"}', None, DeviceHealth("offline"), live=True)
    await writer.commit_group([will])
    device = await db.fetchrow("SELECT * FROM footfall.devices")
    assert (device["status_state"], device["spool_batches"], device["agent_version"]) == ("offline", 3, "0.2.0")
    assert device["status_received_at"].timestamp() == NOW_S + 60
    assert device["last_seen_at"].timestamp() == NOW_S and device["clock_skew_s"] == -1.5

    # A stored (retained) copy updates the state but neither last_seen_at nor the skew.
    stored = StatusUpdate(SITE, DEVICE, NOW_S + 120, '{"state": "online"}', None, DeviceHealth("online", 0), live=False)
    await writer.commit_group([stored])
    device = await db.fetchrow("SELECT * FROM footfall.devices")
    assert (device["status_state"], device["spool_batches"]) == ("online", 0)
    assert device["last_seen_at"].timestamp() == NOW_S and device["clock_skew_measured_at"].timestamp() == NOW_S
