"""Collector fixtures on top of the shared harness (``pg_dsn``, ``broker`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from collector.db.migrate import apply_migrations
from shared.signing import DeviceSigner
from tests.collector.collector_helpers import enroll


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated database."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def signer() -> DeviceSigner:
    return DeviceSigner.generate()


@pytest.fixture
async def enrolled(db: asyncpg.Pool, signer: DeviceSigner) -> DeviceSigner:
    """The default test device (shop1/pi1), enrolled with ``signer``'s key."""
    await enroll(db, signer)
    return signer
