"""Retention: drop whole partitions once they are older than their table keeps.

Dropping a partition costs no vacuum and no bloat, unlike ``DELETE``. A
partition goes once its *upper* bound is older than the table's retention, so
nothing younger than the limit is ever lost. The pseudonymous identity rows
derived from sightings (``wifi_mac_hours``, ``wifi_identities``) are small and
unpartitioned; they are deleted row-wise on the sightings' schedule, so no
pseudonym outlives the raw sightings it came from. Runs under the partition
lock, so collectors sharing the database take turns; a late upload into an
expired day simply creates the partition again and the next pass drops it.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

import asyncpg

from collector.config import RetentionConfig
from collector.db.partitions import PARTITION_LOCK_KEY, PARTITIONED_TABLES, PartitionedTable, PartitionManager

log = logging.getLogger(__name__)

_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass ORDER BY c.relname
"""

_DELETE_MAC_HOURS = "DELETE FROM footfall.wifi_mac_hours WHERE hour_start < $1"
# An identity whose MAC has no hour left is a pseudonym nothing refers to any more.
_DELETE_ORPHAN_IDENTITIES = """
DELETE FROM footfall.wifi_identities i
WHERE NOT EXISTS (
    SELECT FROM footfall.wifi_mac_hours h
    WHERE h.site_id = i.site_id AND h.key_epoch = i.key_epoch AND h.pseudonym = i.pseudonym
)
"""


def partition_end(table: PartitionedTable, name: str) -> datetime | None:
    """Upper bound of a partition named by :class:`PartitionedTable`; ``None`` for a name it did not make."""
    match = re.fullmatch(rf"{table.table}_p(\d{{4}})(\d{{2}})(\d{{2}})?", name)
    if match is None or (match[3] is None) != (table.granularity == "month"):
        return None
    start = datetime(int(match[1]), int(match[2]), int(match[3] or 1), tzinfo=timezone.utc)
    return table.bounds(int(start.timestamp()) // 86_400)[2]


async def enforce_retention(
    pool: asyncpg.Pool, config: RetentionConfig, now: datetime, partitions: PartitionManager | None = None
) -> list[str]:
    """Drop expired partitions and identity rows; return the partitions dropped."""
    dropped: list[str] = []
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
        for table in PARTITIONED_TABLES:
            days = config.days_of(table.table)
            if days is None:
                continue
            cutoff = now - timedelta(days=days)
            for row in await connection.fetch(_PARTITIONS, f"footfall.{table.table}"):
                end = partition_end(table, row["relname"])
                if end is not None and end <= cutoff:
                    # The name is one we made (matched above), never input text.
                    await connection.execute(f"DROP TABLE footfall.{row['relname']}")
                    dropped.append(row["relname"])
                    log.info("partition=%s action=drop retention_days=%d", row["relname"], days)
        if config.wifi_sightings_days is not None:
            await connection.execute(_DELETE_MAC_HOURS, now - timedelta(days=config.wifi_sightings_days))
            await connection.execute(_DELETE_ORPHAN_IDENTITIES)
    if dropped and partitions is not None:
        partitions.forget()
    return dropped
