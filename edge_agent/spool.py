"""The durable outbox: every signed batch waits here until the collector confirms it.

Why SQLite in WAL mode with ``synchronous=NORMAL`` is enough:

* **kill -9** cannot lose or tear a batch. A commit is complete once its frames
  are written into the ``-wal`` file; those writes sit in the kernel's page
  cache, which outlives the process. A transaction cut short by the kill never
  wrote its commit frame and is ignored when the spool is reopened.
* **A power cut** can lose only the last few commits — the WAL is fsynced at
  checkpoints, not at every commit — and never corrupts the file: each WAL
  frame is checksummed, and an incomplete tail is discarded on recovery. So
  at worst the few most recent batches vanish, and their ``seq`` numbers are
  handed out again after the reboot. :meth:`Spool.sync` closes the one hole
  that would matter: the uplink calls it before a batch is first published,
  so a ``seq`` the collector has seen is always on disk and never reused for
  different content. ``synchronous="FULL"`` fsyncs every append instead.

Sequence numbers are the collector's idempotency key, so they must never be
reused, not even when the file is corrupt and replaced by an empty one. The
spool therefore reserves them in blocks in a small fsynced side file
(``<spool>.seq``); a fresh spool starts above every ``seq`` ever reserved.

The spool is bounded (``max_bytes`` of stored messages): when it is full the
oldest batches are evicted and counted, because on a device that has been
offline for days the newest data is the most useful. The ``spool_floor``
stamped into each batch tells the collector which sequence numbers will never
come, so eviction never stalls its cumulative acknowledgement.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from shared.protocol import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Sequence numbers reserved per write of the side file.
SEQ_RESERVATION_BLOCK = 1024
#: Freed on a full disk beyond the failed message itself: a handful of rows
#: deleted from the oldest end frees no whole page, and only whole pages can
#: take a new batch at the newest end of the table.
DISK_FULL_HEADROOM_BYTES = 64 << 10
#: After a checkpoint the WAL is truncated to this size, so it cannot keep disk space.
WAL_SIZE_LIMIT_BYTES = 4 << 20

Synchronous = Literal["NORMAL", "FULL"]
MakeMessage = Callable[[int, int], bytes]
"""``make_message(seq, spool_floor) -> signed message bytes``."""

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    # message last: reading seq and size_bytes never touches the blob's overflow pages
    """CREATE TABLE batches (
        seq          INTEGER PRIMARY KEY,
        size_bytes   INTEGER NOT NULL,
        events       INTEGER NOT NULL,
        created_at_s REAL    NOT NULL,
        message      BLOB    NOT NULL
    )""",
)


@dataclass(frozen=True)
class SpoolConfig:
    """Where the spool lives and how much of the disk it may use."""

    path: Path | None = field(
        default=None,
        metadata={"help": "the spool file, writable by the service user; default <state_dir>/spool.sqlite3"},
    )
    max_bytes: int = field(
        default=64 << 20,
        metadata={"help": "bytes of batches to keep while offline, at least 1 MiB; oldest are evicted beyond it"},
    )
    synchronous: Synchronous = field(
        default="NORMAL",
        metadata={"help": "NORMAL (a power cut may lose the last few batches) or FULL (fsync every batch)"},
    )

    def __post_init__(self) -> None:
        if self.max_bytes < MAX_MESSAGE_BYTES:
            raise ValueError(f"spool max_bytes must be at least {MAX_MESSAGE_BYTES} (one full batch)")


class SpoolStats(NamedTuple):
    batches: int
    bytes: int
    #: Smallest seq still stored, ``None`` when the spool is empty.
    oldest_seq: int | None
    #: The seq the next append will get.
    next_seq: int
    evicted_batches: int
    evicted_events: int


class SpoolFullError(Exception):
    """The disk is full even after evicting old batches; this batch was not stored."""


class Spool:
    """SQLite outbox of signed batches, shared by the pipeline and uplink threads.

    One connection guarded by a lock: appends are a few per second at most, so
    serialising them with reads and deletes costs nothing and keeps the
    in-memory counters exact.
    """

    def __init__(self, path: Path, max_bytes: int = 64 << 20, synchronous: Synchronous = "NORMAL") -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._last_message_bytes = 0
        self._evicting = False
        self._reservation = _SeqReservation(self.path.with_name(self.path.name + ".seq"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            self._move_aside(str(exc))
            self._db = self._open()
        self._count, self._bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM batches"
        ).fetchone()

    @classmethod
    def from_config(cls, config: SpoolConfig, default_path: Path | None = None) -> "Spool":
        """Open the configured spool; ``default_path`` applies when the config names no file."""
        path = config.path or default_path
        if path is None:
            raise ValueError("no spool path: set spool.path or pass default_path")
        return cls(path, config.max_bytes, config.synchronous)

    # -- opening -------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise _CorruptSpool("; ".join(problems[:3]))
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._create_schema(db)
            elif version != SCHEMA_VERSION:
                raise _CorruptSpool(f"schema version {version}, this agent understands {SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _create_schema(self, db: sqlite3.Connection) -> None:
        # A brand-new file (or one replacing a corrupt spool) starts above every
        # seq ever reserved, so the collector never sees a seq twice.
        first_seq = max(1, self._reservation.reserved)
        with _transaction(db):
            for statement in _SCHEMA:
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("next_seq", first_seq), ("evicted_batches", 0), ("evicted_events", 0)],
            )
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{target}{suffix}"))
        log.error(
            "spool %s is unusable (%s): moved it to %s and started an empty spool; its unsent batches are lost",
            self.path, reason, target,
        )

    # -- the pipeline thread ---------------------------------------------------

    def append(self, make_message: MakeMessage, events: int) -> int:
        """Store a new batch under the next seq and return that seq.

        ``make_message(seq, spool_floor)`` signs the batch; it may be called more
        than once (when evicting raises the floor, or on the retry after a full
        disk). Raises :class:`SpoolFullError` when even evicting cannot make room.
        """
        with self._lock:
            try:
                return self._append(make_message, events)
            except sqlite3.OperationalError as exc:
                if not _is_disk_full(exc):
                    raise
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                # The seq side file: deleting rows frees no space in the file system.
                raise SpoolFullError(f"spool {self.path}: no space left for {self._reservation.path}") from None
            log.warning("spool %s: disk full; evicting the oldest batches and retrying", self.path)
            try:
                return self._append(make_message, events, free_bytes=2 * self._last_message_bytes + DISK_FULL_HEADROOM_BYTES)
            except sqlite3.OperationalError as exc:
                if not _is_disk_full(exc):
                    raise
                raise SpoolFullError(f"spool {self.path}: disk full even after evicting old batches") from None

    def _append(self, make_message: MakeMessage, events: int, free_bytes: int = 0) -> int:
        """One transaction: take the next seq, evict what does not fit, insert."""
        db = self._db
        with _transaction(db):
            seq = self._meta("next_seq")
            if seq >= self._reservation.reserved:
                self._reservation.reserve_through(seq + SEQ_RESERVATION_BLOCK)
            floor = self._oldest_seq() or seq
            # Evicting raises the floor, which changes the message and perhaps its
            # size; the floor only rises and stops at seq, so this settles.
            while True:
                message = make_message(seq, floor)
                self._last_message_bytes = len(message)
                excess_bytes = max(self._bytes + len(message) - self.max_bytes, free_bytes)
                needed_floor = self._floor_after_freeing(excess_bytes, new_seq=seq)
                if needed_floor <= floor:
                    break
                floor = needed_floor
            evicted = self._evict_below(floor)
            db.execute(
                "INSERT INTO batches (seq, size_bytes, events, created_at_s, message) VALUES (?, ?, ?, ?, ?)",
                (seq, len(message), events, time.time(), message),
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
        self._count += 1 - evicted.batches
        self._bytes += len(message) - evicted.bytes
        if free_bytes == 0:
            if evicted.batches and not self._evicting:
                log.warning(
                    "spool %s holds its limit of %d bytes: evicting the oldest batches; counts are in the status",
                    self.path, self.max_bytes,
                )
            self._evicting = evicted.batches > 0
        return seq

    # -- the uplink thread -------------------------------------------------------

    def pending(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Stored batches with seq > ``after_seq``, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT seq, message FROM batches WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()

    def ack(self, acked_seq: int) -> int:
        """Delete every batch with seq ≤ ``acked_seq`` (the collector committed them)."""
        with self._lock:
            db = self._db
            with _transaction(db):
                deleted, size_bytes = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM batches WHERE seq <= ?", (acked_seq,)
                ).fetchone()
                db.execute("DELETE FROM batches WHERE seq <= ?", (acked_seq,))
            self._count -= deleted
            self._bytes -= size_bytes
            return deleted

    def sync(self) -> None:
        """Make every stored batch survive a power cut (fsync the WAL and the file).

        Called before a batch is first published: a seq the collector has seen
        must never be handed out again for other content. No lock: fsync
        flushes whatever was committed before the call, and appends need not
        wait for the SD card.
        """
        for name in (f"{self.path}-wal", str(self.path)):
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(
                batches=self._count,
                bytes=self._bytes,
                oldest_seq=self._oldest_seq(),
                next_seq=self._meta("next_seq"),
                evicted_batches=self._meta("evicted_batches"),
                evicted_events=self._meta("evicted_events"),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- helpers (caller holds the lock) ---------------------------------------------

    def _meta(self, key: str) -> int:
        return self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def _oldest_seq(self) -> int | None:
        return self._db.execute("SELECT MIN(seq) FROM batches").fetchone()[0]

    def _floor_after_freeing(self, excess_bytes: int, new_seq: int) -> int:
        """The smallest seq that may stay when the oldest batches must free ``excess_bytes``."""
        freed_bytes = 0
        for seq, size_bytes in self._db.execute("SELECT seq, size_bytes FROM batches ORDER BY seq"):
            if freed_bytes >= excess_bytes:
                return seq
            freed_bytes += size_bytes
        return new_seq

    def _evict_below(self, floor: int) -> "_Evicted":
        """Delete every batch with seq < ``floor`` and count them as evicted."""
        evicted = _Evicted(*self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0), COALESCE(SUM(events), 0) FROM batches WHERE seq < ?",
            (floor,),
        ).fetchone())
        if evicted.batches:
            self._db.execute("DELETE FROM batches WHERE seq < ?", (floor,))
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'evicted_batches'", (evicted.batches,))
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'evicted_events'", (evicted.events,))
        return evicted


class _Evicted(NamedTuple):
    batches: int
    bytes: int
    events: int


class _SeqReservation:
    """A side file holding a seq above every seq ever handed out.

    Written (atomically, fsynced) once per :data:`SEQ_RESERVATION_BLOCK`
    appends, before any seq of the new block is used; it survives the loss of
    the SQLite file itself.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reserved = self.read()

    def read(self) -> int:
        try:
            return int(self.path.read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return 0

    def reserve_through(self, seq: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(f"{seq}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.reserved = seq


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any error unless SQLite already did."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class _CorruptSpool(sqlite3.DatabaseError):
    """The file opened but fails the integrity check or has an unknown schema."""


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    if isinstance(exc, _CorruptSpool):
        return True
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _is_disk_full(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
