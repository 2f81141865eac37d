"""Analytics fixtures on top of the shared harness (``pg_dsn`` in tests/conftest.py)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable

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


@pytest.fixture
async def fresh_pool(pg_server) -> AsyncIterator[Callable[[], Awaitable[asyncpg.Pool]]]:
    """Makes more fresh, migrated databases within one test (to compare runs); drops them afterwards."""
    made: list[tuple[str, asyncpg.Pool]] = []

    async def make() -> asyncpg.Pool:
        name = f"footfall_run_{len(made)}_{random.randrange(1 << 30)}"
        pool = await asyncpg.create_pool(pg_server.create_database(name), min_size=1, max_size=4)
        async with pool.acquire() as connection:
            await apply_migrations(connection)
        made.append((name, pool))
        return pool

    yield make
    for name, pool in made:
        await pool.close()
        pg_server.drop_database(name)
