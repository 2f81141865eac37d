"""Analytics fixtures on top of the shared harness (``pg_dsn`` in tests/conftest.py)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from tests.conftest import open_migrated_pool


@pytest.fixture
def pool(db: asyncpg.Pool) -> asyncpg.Pool:
    """A pool on a fresh, migrated database (the shared ``db`` fixture, under the analytics tests' name)."""
    return db


@pytest.fixture
async def fresh_pool(pg_server) -> AsyncIterator[Callable[[], Awaitable[asyncpg.Pool]]]:
    """Makes more fresh, migrated databases within one test (to compare runs); drops them afterwards."""
    made: list[tuple[str, asyncpg.Pool]] = []

    async def make() -> asyncpg.Pool:
        name = f"footfall_run_{len(made)}_{random.randrange(1 << 30)}"
        pool = await open_migrated_pool(pg_server.create_database(name))
        made.append((name, pool))
        return pool

    yield make
    for name, pool in made:
        await pool.close()
        pg_server.drop_database(name)
