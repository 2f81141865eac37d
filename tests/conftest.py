"""Real services for tests: a PostgreSQL server per session, a database and a broker per test.

No mocks: the collector's promises (commit before ack, redelivery, broker
restarts) only mean something against real Mosquitto and PostgreSQL.
`FOOTFALL_TEST_DSN=postgresql://...` points the tests at an existing server
instead of a throwaway one; `FOOTFALL_BROKER=amqtt` forces the fallback broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from collector.db.migrate import apply_migrations
from shared.devstack import Broker, ExternalPostgres, ThrowawayPostgres, start_broker
from tests.realdata import real_data_dir


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ThrowawayPostgres | ExternalPostgres]:
    """The session's PostgreSQL server; throwaway and not crash-safe, for speed."""
    external_dsn = os.environ.get("FOOTFALL_TEST_DSN")
    if external_dsn:
        yield ExternalPostgres(external_dsn)
        return
    server = ThrowawayPostgres(durable=False)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_dsn(pg_server: ThrowawayPostgres | ExternalPostgres) -> Iterator[str]:
    """DSN of a fresh database for this test, dropped afterwards."""
    name = f"footfall_test_{uuid.uuid4().hex[:12]}"
    dsn = pg_server.create_database(name)
    try:
        yield dsn
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A fresh MQTT broker for this test (Mosquitto, else amqtt); kill or restart it at will."""
    started = start_broker()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real-data folder (captures, videos); skips the test when it is absent."""
    path = real_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}; set FOOTFALL_REAL_DATA")
    return path


async def open_migrated_pool(dsn: str) -> asyncpg.Pool:
    """A connection pool on ``dsn`` with the collector's schema migrations applied."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    return pool


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated database."""
    pool = await open_migrated_pool(pg_dsn)
    try:
        yield pool
    finally:
        await pool.close()
