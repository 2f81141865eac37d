"""Schema migrations: numbered SQL files applied once, in order, recorded with a checksum.

Everything happens in one transaction under a transaction-level advisory
lock, so several collectors starting at once serialise here and the losers
find nothing left to do. An applied file whose bytes changed since is refused:
the database no longer matches what the file says, and guessing is worse than
stopping.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: pg_advisory_xact_lock key owned by migrations (any constant; documented in docs/schema.md).
MIGRATION_LOCK_KEY = 0x666F6F7466616C01
_FILE_NAME = re.compile(r"(\d{3,})_([a-z0-9_]+)\.sql")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS footfall;
CREATE TABLE IF NOT EXISTS footfall.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    checksum    bytea NOT NULL
);
"""


class MigrationError(Exception):
    """The database and the migration files disagree; the message says how."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: bytes

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of ``directory`` in version order."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNN_lower_case_name.sql")
        data = path.read_bytes()
        migrations.append(Migration(int(match[1]), match[2], data.decode("utf-8"), hashlib.sha256(data).digest()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migration files share a version number")
    return sorted(migrations, key=lambda m: m.version)


async def apply_migrations(connection: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations; return the labels of those applied (empty when up to date)."""
    migrations = load_migrations(directory)
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await connection.execute(_BOOTSTRAP)
        rows = await connection.fetch("SELECT version, name, checksum FROM footfall.schema_migrations")
        applied = {row["version"]: row for row in rows}
        _check_applied(applied, {m.version: m for m in migrations})
        pending = [m for m in migrations if m.version not in applied]
        for migration in pending:
            log.info("migration=%s action=apply", migration.label)
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO footfall.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    return [m.label for m in pending]


def _check_applied(applied: dict[int, asyncpg.Record], known: dict[int, Migration]) -> None:
    for version, row in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:03d}_{row['name']}, which this collector does not know;"
                " run a collector at least as new as the one that migrated it"
            )
        if bytes(row["checksum"]) != migration.checksum:
            raise MigrationError(
                f"migration {migration.label} changed after it was applied; restore the original file"
                " and put the change in a new migration"
            )
