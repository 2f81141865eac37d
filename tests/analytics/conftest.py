"""Analytics fixtures on top of the shared harness (``pg_dsn`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from collector.db.migrate import apply_migrations


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated database."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    try:
        yield pool
    finally:
        await pool.close()
