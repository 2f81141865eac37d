"""Analytics on a thread of its own, so a long round never stalls ingest, acks or the probes.

A round is mostly Python between two awaits (sessionising, presence): with a
couple of hundred thousand fresh devices in a bucket — a backlog after an
outage — it computes for seconds at a stretch. On the service's event loop
that would hold back commits and acks, time out ``/healthz`` for an
orchestrator and trip the systemd watchdog. The worker runs
:class:`~collector.analytics.task.AnalyticsTask` on its own event loop with
its own small pool (``POOL_SIZE`` connections beside ``database.pool_size``);
the interpreter hands the other thread the GIL every few milliseconds, so the
service loop keeps answering. Work and its limits stay the same:
``analytics.max_busy_share`` still spaces the rounds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import asyncpg

from collector.analytics.task import AnalyticsTask
from collector.config import AnalyticsConfig
from collector.db.partitions import PartitionManager
from collector.state import AnalyticsState

log = logging.getLogger(__name__)

#: One connection for the round, one to create a partition the round found missing.
POOL_SIZE = 2
#: How long :meth:`AnalyticsWorker.stop` waits for the cancelled round to roll back.
STOP_TIMEOUT_S = 10.0


class AnalyticsWorker:
    """Owns the analytics thread: :meth:`start` it once, :meth:`stop` it once."""

    def __init__(
        self,
        dsn: str,
        config: AnalyticsConfig,
        partitions: PartitionManager,
        state: AnalyticsState,
        on_crash: Callable[[BaseException], None],
    ) -> None:
        self._dsn = dsn
        self._config = config
        self._partitions = partitions
        self._state = state
        self._on_crash = on_crash
        self._thread = threading.Thread(target=self._main, name="collector-analytics", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    async def stop(self) -> None:
        """Cancel the round in progress (its transaction rolls back; its buckets stay queued) and join."""
        self._stop_requested = True
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        await asyncio.to_thread(self._thread.join, STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("analytics=still-running after_s=%.0f", STOP_TIMEOUT_S)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except asyncio.CancelledError:
            pass
        except BaseException as error:  # a bug: the service stops and exits 1, as for its own tasks
            log.error("task=collector-analytics crashed", exc_info=error)
            self._on_crash(error)
        finally:
            self._started.set()

    async def _serve(self) -> None:
        pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=POOL_SIZE, command_timeout=60)
        try:
            task = AnalyticsTask(pool, self._config, self._partitions, self._state)
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            self._started.set()
            if not self._stop_requested:
                await task.run(asyncio.Event())
        finally:
            await pool.close()
