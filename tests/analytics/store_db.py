"""A simulated store in a real database: its site, devices and zones, and batches fed through the writer."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from collector.analytics.task import AnalyticsTask
from collector.db.writer import Writer
from collector.ingest import Accepted, ingest_batch
from collector.registry import add_site, enroll_device
from collector.state import CollectorState
from shared.protocol import Batch, encode_body, frame_message
from shared.signing import DeviceSigner, load_verifier
from shared.simulator import StoreLayout
from shared.topics import batch_topic

#: Columns compared between runs: everything but computed_at (when, not what).
VISIT_COLUMNS = (
    "site_id, visit_id, key_epoch, visitor_id, started_at, ended_at, dwell_s, visitor_band_s, rssi_max, moments, "
    "is_visitor, is_passerby, is_stationary, is_returning, closed"
)
FOOTFALL_COLUMNS = (
    "site_id, zone_id, bucket_start, bucket_seconds, entries, exits, passersby, visitors, new_visitors, "
    "returning_visitors, devices_present, dwell_median_s, capture_rate"
)


class SimulatedStore:
    """The site of a :class:`StoreLayout`, enrolled and zoned, fed like a collector would feed it."""

    def __init__(self, pool: asyncpg.Pool, layout: StoreLayout) -> None:
        self.pool = pool
        self.layout = layout
        self.signers = {device: DeviceSigner.generate() for device in (*layout.sensors, layout.camera)}
        self.writer = Writer(pool, CollectorState())
        self.analytics = AnalyticsTask(pool)

    @classmethod
    async def create(cls, pool: asyncpg.Pool, layout: StoreLayout, with_zones: bool = True) -> SimulatedStore:
        store = cls(pool, layout)
        async with pool.acquire() as connection:
            await add_site(connection, layout.site_id, layout.time_zone, "simulated store")
            for device, signer in store.signers.items():
                await enroll_device(connection, layout.site_id, device, signer.public_key_bytes)
            if with_zones:
                await connection.executemany(
                    "INSERT INTO footfall.zones (site_id, zone_id, device_id, rssi_min_dbm, rssi_max_dbm)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    [(layout.site_id, z.zone_id, z.device_id, z.rssi_min_dbm, z.rssi_max_dbm) for z in layout.zones],
                )
        return store

    def accepted(self, batch: Batch) -> Accepted:
        """Sign and verify ``batch`` exactly as the collector's ingest does."""
        signer = self.signers[batch.device_id]
        body = encode_body(batch)
        verifier = load_verifier(signer.public_key_bytes)
        result = ingest_batch(
            batch_topic(batch.site_id, batch.device_id),
            frame_message(body, signer.sign(body)),
            time.time(),
            lambda _site, _device: verifier,
        )
        assert isinstance(result, Accepted), result
        return result

    async def send(self, batches: Sequence[Batch], analytics_every: int | None = None) -> None:
        """Commit ``batches`` one group each; with ``analytics_every``, run analytics after every that many."""
        for number, batch in enumerate(batches, start=1):
            await self.writer.commit([self.accepted(batch)])
            if analytics_every and number % analytics_every == 0:
                await self.analytics.drain()
        await self.analytics.drain()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pool.fetch(sql, *args)

    async def tables(self) -> dict[str, list[tuple]]:
        """Every analytics table in a fixed order, for comparing two runs."""
        return {
            "visits": [tuple(r) for r in await self.fetch(f"SELECT {VISIT_COLUMNS} FROM footfall.visits ORDER BY 1, 5, 2")],
            "trajectory": [
                tuple(r)
                for r in await self.fetch(
                    "SELECT site_id, visit_id, seq, zone_id, entered_at, exited_at, dwell_s, rssi_max"
                    " FROM footfall.trajectory ORDER BY 1, 2, 3"
                )
            ],
            "footfall": [
                tuple(r) for r in await self.fetch(f"SELECT {FOOTFALL_COLUMNS} FROM footfall.footfall ORDER BY 1, 2, 3")
            ],
            "wifi_identities": [
                tuple(r) for r in await self.fetch("SELECT * FROM footfall.wifi_identities ORDER BY 1, 2, 3")
            ],
        }


async def run_tables(
    make_pool: Callable[[], Awaitable[asyncpg.Pool]], layout: StoreLayout, batches: Sequence[Batch], analytics_every: int
) -> dict[str, list[tuple]]:
    """Feed ``batches`` into a fresh database of ``make_pool``; return its analytics tables."""
    store = await SimulatedStore.create(await make_pool(), layout)
    await store.send(batches, analytics_every=analytics_every)
    return await store.tables()
