"""The collector's observable state: connection states and counters, in one object.

The service owns one :class:`CollectorState`; the consumer, the pipeline and
the writer update it, and the HTTP handlers only read it. No globals, so two
collectors in one test process do not share counters.
"""

from __future__ import annotations

import bisect
import enum
import multiprocessing
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Child processes start fresh: forking a process with threads and a running event loop is unsafe.
SPAWN = multiprocessing.get_context("spawn")

#: Upper bounds of the batch latency buckets: sub-second when live, hours when a device uploads its spool late.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3_600.0, 86_400.0)


class ConnectionState(enum.Enum):
    """Where a connection to the broker or the database stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class PoolGauges(Protocol):
    """What /metrics reads from the database pool (asyncpg.Pool has these)."""

    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...


@dataclass
class Histogram:
    """A Prometheus histogram: cumulative counts per upper bound, plus sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations ≤ it) pairs, ending with +Inf."""
        pairs, running = [], 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            pairs.append((bound, running))
        pairs.append((float("inf"), self.count))
        return pairs


class _SharedNumber:
    """An attribute kept in a slot of the owner's shared-memory array of doubles."""

    def __init__(self, kind: type[int] | type[float]) -> None:
        self._kind = kind
        self._index = -1

    def __set_name__(self, owner: type, name: str) -> None:
        self._index = owner.FIELDS.index(name)

    def __get__(self, instance: "AnalyticsState", owner: type) -> Any:
        return self._kind(instance.values[self._index])

    def __set__(self, instance: "AnalyticsState", value: float) -> None:
        instance.values[self._index] = value


class AnalyticsState:
    """What the analytics task (collector/analytics/task.py) did and how far behind it is.

    The analytics process writes these and the service's ``/metrics`` reads
    them, so they live in shared memory. There is one writer and every value
    fits a double exactly (counts stay far below 2**53), so no lock is needed.
    """

    FIELDS = ("rounds", "failures", "seconds_total", "backlog_buckets", "backlog_oldest_s")

    rounds = _SharedNumber(int)
    failures = _SharedNumber(int)
    seconds_total = _SharedNumber(float)
    #: Buckets queued at the last look (all collectors' work), and how long the oldest has waited.
    backlog_buckets = _SharedNumber(int)
    backlog_oldest_s = _SharedNumber(float)

    def __init__(self, values: Any = None) -> None:
        #: A ``multiprocessing`` RawArray: hand it to the process that should write into it.
        self.values = values if values is not None else SPAWN.RawArray("d", len(self.FIELDS))


@dataclass
class CollectorState:
    broker: ConnectionState = ConnectionState.CONNECTING
    database: ConnectionState = ConnectionState.CONNECTING
    started_at_s: float = field(default_factory=time.time)
    messages_received: int = 0
    batches_committed: int = 0
    #: Rows committed per event table.
    rows_committed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    status_updates: int = 0
    db_errors: int = 0
    commit_groups: int = 0
    commit_seconds_total: float = 0.0
    #: Device ``created_at`` → commit of each new batch (includes the device's clock skew).
    batch_latency_s: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    #: Receive times of the messages received but not yet acknowledged, oldest first (acks go in arrival order).
    unacked_received_at_s: deque[float] = field(default_factory=deque)
    #: Set by the service once its pool exists.
    db_pool: PoolGauges | None = None
    analytics: AnalyticsState = field(default_factory=AnalyticsState)

    @property
    def ready(self) -> bool:
        return self.broker is ConnectionState.CONNECTED and self.database is ConnectionState.CONNECTED

    @property
    def pending_messages(self) -> int:
        """Messages received but not yet acknowledged to the broker."""
        return len(self.unacked_received_at_s)

    def oldest_pending_age_s(self, now_s: float | None = None) -> float:
        """How long the oldest unacknowledged message has waited; 0 when none waits."""
        if not self.unacked_received_at_s:
            return 0.0
        return max(0.0, (time.time() if now_s is None else now_s) - self.unacked_received_at_s[0])
