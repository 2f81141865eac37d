"""Time partitions of the raw event tables, created on demand.

Each event table is range-partitioned on its time column with no DEFAULT
partition, so a row can only be stored once its day (or month) exists. The
writer asks :class:`PartitionManager` for the partitions a group needs
*before* its ingest transaction: creating a partition briefly locks the parent
table, which must not be held for a whole commit. Several collectors may ask
at once; an advisory lock plus ``IF NOT EXISTS`` makes that a no-op for all
but the first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

import asyncpg

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key owned by partition creation.
PARTITION_LOCK_KEY = 0x666F6F7466616C02
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class PartitionedTable:
    """A table partitioned by ``granularity`` ranges; partitions are named ``{table}_pYYYYMMDD`` or ``_pYYYYMM``."""

    table: str
    granularity: Literal["day", "month"]

    def bounds(self, epoch_day: int) -> tuple[str, datetime, datetime]:
        """Name, lower and upper bound of the partition holding UTC day number ``epoch_day``."""
        day = datetime.fromtimestamp(epoch_day * SECONDS_PER_DAY, timezone.utc)
        if self.granularity == "day":
            start = day
            end = datetime.fromtimestamp((epoch_day + 1) * SECONDS_PER_DAY, timezone.utc)
            return f"{self.table}_p{start:%Y%m%d}", start, end
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return f"{self.table}_p{start:%Y%m}", start, end


WIFI_SIGHTINGS = PartitionedTable("wifi_sightings", "day")
DOOR_CROSSINGS = PartitionedTable("door_crossings", "month")
PASSERBY_COUNTS = PartitionedTable("passerby_counts", "day")
# Derived by the analytics task (collector/analytics/), kept longer than raw rows.
VISITS = PartitionedTable("visits", "month")
TRAJECTORY = PartitionedTable("trajectory", "month")
FOOTFALL = PartitionedTable("footfall", "month")
PARTITIONED_TABLES = (WIFI_SIGHTINGS, DOOR_CROSSINGS, PASSERBY_COUNTS, VISITS, TRAJECTORY, FOOTFALL)


class PartitionManager:
    """Remembers which partitions exist so the common case costs no query."""

    def __init__(self) -> None:
        self._known: set[str] = set()

    def forget(self) -> None:
        """Drop the cache, e.g. after an insert found no partition (someone dropped one)."""
        self._known.clear()

    def missing(self, table: PartitionedTable, epoch_days: Iterable[int]) -> set[int]:
        """The days among ``epoch_days`` whose partition this manager has not seen exist yet.

        For callers inside a transaction that already uses ``table``: creating a
        partition there would wait on their own lock, so they roll back, call
        :meth:`ensure` and try again.
        """
        return {day for day in set(epoch_days) if table.bounds(day)[0] not in self._known}

    async def ensure(self, pool: asyncpg.Pool, table: PartitionedTable, epoch_days: Iterable[int]) -> None:
        """Make sure partitions exist for every UTC day number in ``epoch_days``."""
        wanted = {}
        for epoch_day in set(epoch_days):
            name, start, end = table.bounds(epoch_day)
            if name not in self._known:
                wanted[name] = (start, end)
        if not wanted:
            return
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
            rows = await connection.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = $1::regclass",
                f"footfall.{table.table}",
            )
            existing = {row["relname"] for row in rows}
            for name, (start, end) in sorted(wanted.items()):
                if name in existing:
                    continue
                # Identifiers are built from our own table names and dates, never from input text.
                await connection.execute(
                    f"CREATE TABLE IF NOT EXISTS footfall.{name} PARTITION OF footfall.{table.table}"
                    f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
                log.info("partition=%s action=create", name)
        self._known.update(existing)
        self._known.update(wanted)


def epoch_days(epoch_seconds: Iterable[float]) -> set[int]:
    """The UTC day numbers touched by some epoch-second timestamps."""
    return {int(seconds // SECONDS_PER_DAY) for seconds in epoch_seconds}
