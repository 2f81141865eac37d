"""Analytics in a process of its own, so a long round takes neither the ingest loop nor its CPU.

A round is mostly Python between two awaits (sessionising, presence): with a
couple of hundred thousand fresh devices in a bucket — a backlog after an
outage, or a burst — it computes for seconds at a stretch. On the service's
event loop that would hold back commits and acks, time out ``/healthz`` and
trip the systemd watchdog; on a thread of the same process it would still
share the interpreter lock with ingest, which then ran at half speed for the
whole round. The worker runs :class:`~collector.analytics.task.AnalyticsTask`
in a child process with its own small pool (``POOL_SIZE`` connections beside
``database.pool_size``), so ingest and analytics use two cores. Work and its
limits stay the same: ``analytics.max_busy_share`` still spaces the rounds.

The two processes share three things:

* the :class:`~collector.state.AnalyticsState` counters, in shared memory,
  for ``/metrics``;
* a stop pipe: the service holds its only write end, so closing it — or the
  service dying, even by SIGKILL — gives the child an end-of-file, and the
  child cancels its round (the transaction rolls back, the buckets stay
  queued) and exits; no orphan keeps computing;
* a log queue: the child's records are handled by the service's loggers, so
  they come out in the service's format, at its level, on its stream.

The child exiting on its own is a bug (its round errors are caught and
retried inside the task); the service then stops and exits 1, as for a crash
of its own tasks.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import asyncpg

from collector.analytics.task import AnalyticsTask
from collector.config import AnalyticsConfig
from collector.db.partitions import PartitionManager
from collector.state import SPAWN, AnalyticsState

log = logging.getLogger(__name__)

#: One connection for the round, one to create a partition the round found missing.
POOL_SIZE = 2
#: How long :meth:`AnalyticsWorker.stop` waits for the cancelled round to roll back before a SIGKILL.
STOP_TIMEOUT_S = 10.0


class AnalyticsWorker:
    """Owns the analytics process: :meth:`start` it once (inside the service's loop), :meth:`stop` it once."""

    def __init__(
        self,
        dsn: str,
        config: AnalyticsConfig,
        state: AnalyticsState,
        on_crash: Callable[[int | None], None],
    ) -> None:
        self._dsn = dsn
        self._config = config
        self._state = state
        self._on_crash = on_crash
        self._stopping = False
        self._log_queue: Any = SPAWN.Queue()
        self._log_thread = threading.Thread(target=_forward_logs, args=(self._log_queue,), name="analytics-logs")
        stop_receiver, self._stop_sender = SPAWN.Pipe(duplex=False)
        self._process = SPAWN.Process(
            target=run_analytics_process,
            args=(dsn, config, state.values, stop_receiver, self._log_queue, logging.getLogger().getEffectiveLevel()),
            name="collector-analytics",
            daemon=True,
        )
        self._stop_receiver = stop_receiver

    def start(self) -> None:
        self._log_thread.start()
        self._process.start()
        self._stop_receiver.close()  # the child's end: ours would keep the pipe open after the service died
        asyncio.get_running_loop().add_reader(self._process.sentinel, self._exited)

    async def stop(self) -> None:
        """Close the stop pipe, wait for the child to roll back and exit (SIGKILL after ``STOP_TIMEOUT_S``)."""
        self._stopping = True
        asyncio.get_running_loop().remove_reader(self._process.sentinel)
        self._stop_sender.close()
        await asyncio.to_thread(self._process.join, STOP_TIMEOUT_S)
        if self._process.is_alive():
            log.warning("analytics=killed after_s=%.0f", STOP_TIMEOUT_S)
            self._process.kill()
            await asyncio.to_thread(self._process.join)
        self._log_queue.put(None)
        await asyncio.to_thread(self._log_thread.join)

    def _exited(self) -> None:
        asyncio.get_running_loop().remove_reader(self._process.sentinel)
        if self._stopping:
            return
        self._process.join()
        log.error("task=collector-analytics exited code=%s", self._process.exitcode)
        self._on_crash(self._process.exitcode)


def _forward_logs(queue: Any) -> None:
    """Service side of the log queue: hand each child record to the logger of the same name."""
    while (record := queue.get()) is not None:
        logging.getLogger(record.name).handle(record)


# --------------------------------------------------------------------------- the child process


def run_analytics_process(
    dsn: str,
    config: AnalyticsConfig,
    values: Any,
    stop_receiver: Connection,
    log_queue: Any,
    log_level: int,
) -> None:
    """Entry point of the analytics process: rounds until the stop pipe closes or SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the service decides
    log_queue.cancel_join_thread()  # a dead service reads no more logs: do not hang at exit on them
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(log_queue)]
    root.setLevel(log_level)
    try:
        asyncio.run(_serve(dsn, config, AnalyticsState(values), stop_receiver))
    except asyncio.CancelledError:
        pass
    except BaseException:
        log.exception("task=collector-analytics crashed")
        raise SystemExit(1) from None


async def _serve(dsn: str, config: AnalyticsConfig, state: AnalyticsState, stop_receiver: Connection) -> None:
    loop = asyncio.get_running_loop()
    serving = asyncio.current_task()
    assert serving is not None

    def stop() -> None:
        loop.remove_reader(stop_receiver.fileno())
        loop.remove_signal_handler(signal.SIGTERM)
        serving.cancel()

    loop.add_reader(stop_receiver.fileno(), stop)  # readable = end of file: the service stopped or died
    loop.add_signal_handler(signal.SIGTERM, stop)  # systemd signals the whole cgroup
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=POOL_SIZE, command_timeout=60)
    log.info("analytics=started pid=%d", os.getpid())
    try:
        await AnalyticsTask(pool, config, PartitionManager(), state).run(asyncio.Event())
    finally:
        await pool.close()
