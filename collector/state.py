"""The collector's observable state: connection states and counters, in one object.

The service owns one :class:`CollectorState`; the consumer, the pipeline and
the writer update it, and the HTTP handlers only read it. No globals, so two
collectors in one test process do not share counters.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from dataclasses import dataclass, field


class ConnectionState(enum.Enum):
    """Where a connection to the broker or the database stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


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
    #: Messages received but not yet acknowledged to the broker.
    pending_messages: int = 0

    @property
    def ready(self) -> bool:
        return self.broker is ConnectionState.CONNECTED and self.database is ConnectionState.CONNECTED
