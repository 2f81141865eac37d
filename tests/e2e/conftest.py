"""A whole system per test: throwaway database, real broker, collector and agent processes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.devstack import Broker
from shared.devstack.system import LocalSystem

BRNO_DAY = "wifi/brno/2022-11-22_position_1.pcap"
BRNO_PROBE_REQUESTS = 25_447


def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one query on its own connection (tests are synchronous; the collector is another process)."""

    async def query() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(dsn)
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()

    return asyncio.run(query())


def spooled_batches(state_dir: Path) -> int:
    """Batches an agent holds in its spool right now (read-only peek at the SQLite file)."""
    spool = state_dir / "spool.sqlite3"
    if not spool.exists():
        return 0
    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM batches").fetchone()[0]


def batches_assigned(state_dir: Path) -> int:
    """How many batch sequence numbers the agent has handed out so far."""
    with sqlite3.connect(f"file:{state_dir / 'spool.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0] - 1


@pytest.fixture
def system(tmp_path: Path, pg_dsn: str, broker: Broker) -> Iterator[LocalSystem]:
    local = LocalSystem(tmp_path, pg_dsn, broker.host, broker.port, broker_speaks_mqtt5=broker.mqtt5)
    local.migrate()
    local.add_site("lab", "Europe/Prague", name="Brno lab")
    try:
        yield local
    finally:
        local.close()
