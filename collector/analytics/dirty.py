"""The analytics work queue: which 5-minute buckets of which site have new raw rows.

The writer calls :func:`mark_dirty` inside the transaction that stores the
rows, so a bucket is queued exactly when its rows become visible — a commit
can never be missed, and a rolled-back one queues nothing. The analytics task
(:mod:`collector.analytics.recompute`) takes the queue apart per site. Late
data (a device uploading yesterday's spool) simply queues yesterday's buckets.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

import asyncpg

from collector.analytics.footfall import BUCKET_S, bucket_of
from shared.protocol import Batch

_INSERT = """
INSERT INTO footfall.analytics_dirty (site_id, bucket_start)
SELECT * FROM unnest($1::text[], $2::timestamptz[])
"""


def dirty_buckets(batches: Iterable[Batch]) -> set[tuple[str, int]]:
    """(site, bucket start) of every event in ``batches``."""
    dirty: set[tuple[str, int]] = set()
    for batch in batches:
        site_id = batch.site_id
        for block in (batch.sightings, batch.crossings):
            if block:  # the time is the first column; distinct times first, a batch has few windows (hot path)
                dirty.update((site_id, bucket_of(t)) for t in set(block.columns()[0]))
        if batch.passersby:
            span_s = batch.passersby.bucket_s
            for row in batch.passersby.rows:
                first, last = bucket_of(row.start_s), bucket_of(row.start_s + span_s - 1)
                dirty.update((site_id, bucket) for bucket in range(first, last + 1, BUCKET_S))
    return dirty


async def mark_dirty(connection: asyncpg.Connection, batches: Iterable[Batch]) -> None:
    """Queue the buckets of ``batches`` for the analytics task, in the caller's transaction."""
    dirty = sorted(dirty_buckets(batches))
    if dirty:
        await connection.execute(
            _INSERT,
            [site_id for site_id, _ in dirty],
            [datetime.fromtimestamp(bucket, timezone.utc) for _, bucket in dirty],
        )
