"""Migrations: applied once, recorded, idempotent, safe when racing, refused when edited."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from collector.db.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations, load_migrations


async def test_applies_once_and_records_checksums(pg_dsn: str) -> None:
    connection = await asyncpg.connect(pg_dsn)
    try:
        first = await apply_migrations(connection)
        assert first == [m.label for m in load_migrations()]
        assert await apply_migrations(connection) == []
        rows = await connection.fetch("SELECT version, name, checksum FROM footfall.schema_migrations ORDER BY version")
        assert [(r["version"], r["name"], bytes(r["checksum"])) for r in rows] == [
            (m.version, m.name, m.checksum) for m in load_migrations()
        ]
        tables = {
            r["tablename"]
            for r in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'footfall'")
        }
        assert {"sites", "devices", "zones", "ingest_batches", "ingest_rejects", "schema_migrations"} <= tables
    finally:
        await connection.close()


async def test_concurrent_migrate_is_safe(pg_dsn: str) -> None:
    connections = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in connections))
        assert sorted(map(len, results)) == [0, 0, len(load_migrations())]
        assert await connections[0].fetchval("SELECT count(*) FROM footfall.schema_migrations") == len(
            load_migrations()
        )
    finally:
        for connection in connections:
            await connection.close()


async def test_changed_migration_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    connection = await asyncpg.connect(pg_dsn)
    try:
        await apply_migrations(connection, directory)
        first = sorted(directory.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited after the fact\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(connection, directory)
        first.unlink()
        with pytest.raises(MigrationError, match="does not know"):
            await apply_migrations(connection, directory)
    finally:
        await connection.close()


async def test_new_migration_is_applied_in_order(pg_dsn: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    connection = await asyncpg.connect(pg_dsn)
    try:
        await apply_migrations(connection, directory)
        (directory / "900_extra.sql").write_text("CREATE TABLE footfall.extra (x int);")
        assert await apply_migrations(connection, directory) == ["900_extra"]
        assert await connection.fetchval("SELECT to_regclass('footfall.extra') IS NOT NULL")
    finally:
        await connection.close()
