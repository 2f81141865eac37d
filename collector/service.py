"""The collector process: consumer → ingest → writer → acks, plus analytics, retention and HTTP.

The analytics task (collector/analytics/task.py) turns committed rows into
visits, trajectory and footfall in a child process of its own
(collector/analytics/worker.py); the retention loop drops expired partitions
(collector/db/retention.py).

In-process (tests, the demo)::

    async with CollectorService(config) as service:   # migrated, HTTP up, consumer started
        ...                                           # service.http_port, service.state
    # leaving the block stops it gracefully

As a process: ``footfall-collector run --config collector.yaml`` (or
``python -m collector run …``), which calls :func:`run_service`.

Shutdown (SIGTERM/SIGINT or :meth:`CollectorService.request_stop`): no new
group is started, the group being committed finishes and is acked, device
acks are flushed, the MQTT connection is closed with a DISCONNECT (the
broker keeps the session and queues what arrives meanwhile), exit 0. A group
whose commit is waiting for an unreachable database is abandoned unacked; the
broker redelivers it to the next collector.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from datetime import datetime, timezone
from types import TracebackType

import asyncpg
from aiohttp import web

from collector.analytics.worker import AnalyticsWorker
from collector.checkers import Checkers
from collector.config import CollectorConfig
from collector.consumer import Backoff, InboundMessage, MqttConsumer
from collector.db.migrate import apply_migrations
from collector.db.partitions import PartitionManager
from collector.db.retention import enforce_retention
from collector.db.writer import TRANSIENT_ERRORS, CommitAbandoned, CommitResult, GroupItem, Writer
from collector.health import LOOP_STALL_S, WRITER_STALL_S, CollectorHealth
from collector.ingest import Accepted, Precheck, Reject, ingest_batch, ingest_status, reject_accepted
from collector.ratelimit import DeviceRateLimiter
from collector.registry import DeviceRegistry
from collector.state import CollectorState, ConnectionState
from collector.web import create_app
from collector.web.auth import plain_http_warning
from shared.sdnotify import SystemdNotifier
from shared.topics import parse_topic
from shared.watchdog import Heartbeat, WatchdogFeeder

log = logging.getLogger(__name__)

DATABASE_CHECK_INTERVAL_S = 2.0
#: Messages verified between two turns of the event loop (a few ms of CPU): the running commit keeps streaming.
INGEST_YIELD_EVERY = 8
#: Rejects that a registry refresh may cure (just enrolled, or key rotated).
_REGISTRY_REASONS = frozenset({"unknown_device", "bad_signature"})


class ServiceStopped(Exception):
    """Stop was requested before the service finished starting."""


class CollectorService:
    """One collector: owns the pool, the consumer, the pipeline task and the HTTP server."""

    def __init__(self, config: CollectorConfig, *, migrate: bool = True) -> None:
        self.config = config
        self.state = CollectorState()
        self._migrate = migrate
        self._registry = DeviceRegistry()
        self._limiter = DeviceRateLimiter(config.limits.device_events_per_s, config.limits.device_burst_events)
        self._queue: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._writer: Writer | None = None
        self._consumer: MqttConsumer | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._analytics: AnalyticsWorker | None = None
        self._checkers = Checkers(config.ingest.check_workers)
        #: One cache of existing partitions for the writer and retention (the analytics process keeps its own).
        self._partitions = PartitionManager()
        self.http_port: int | None = None
        #: Set when a background task died of a bug; run_service then exits 1.
        self.failed = False
        self.loop_heartbeat = Heartbeat(LOOP_STALL_S)
        #: No promise while no commit runs.
        self.writer_heartbeat = Heartbeat(math.inf)

    async def __aenter__(self) -> CollectorService:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Serve HTTP, wait for the database (migrating it), then start consuming.

        Raises :class:`~collector.db.migrate.MigrationError` when the schema cannot be
        brought up to date, :class:`ServiceStopped` when stopped while waiting.
        """
        await self._start_http()
        self._pool = await asyncpg.create_pool(
            self.config.database.dsn, min_size=0, max_size=self.config.database.pool_size, command_timeout=60
        )
        self.state.db_pool = self._pool
        self._writer = Writer(self._pool, self.state, self._partitions)
        self._checkers.start()
        await self._prepare_database()
        loop = asyncio.get_running_loop()
        self._consumer = MqttConsumer(self.config.mqtt, loop, self._receive, self._set_broker_state)
        self._consumer.start()
        self._tasks = [
            asyncio.create_task(self._pipeline(), name="collector-pipeline"),
            asyncio.create_task(self._watch_database(), name="collector-database-check"),
            asyncio.create_task(self._beat_loop_heartbeat(), name="collector-loop-heartbeat"),
            asyncio.create_task(self._enforce_retention(), name="collector-retention"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)
        if self.config.analytics.enabled:
            self._analytics = AnalyticsWorker(
                self.config.database.dsn,
                self.config.analytics,
                self.state.analytics,
                on_crash=lambda _exit_code: self._fail(),
            )
            self._analytics.start()
        log.info("collector=started http_port=%s", self.http_port)

    def request_stop(self) -> None:
        """Ask for a graceful stop (safe from a signal handler)."""
        self._stopping.set()

    async def wait_stop_requested(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        """Finish the current group, ack it, disconnect, close everything. Idempotent."""
        self._stopping.set()
        pipeline = self._tasks[0] if self._tasks else None
        if pipeline is not None:
            await asyncio.wait([pipeline])
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._analytics is not None:
            await self._analytics.stop()
            self._analytics = None
        await self._checkers.close()
        if self._consumer is not None:
            await asyncio.to_thread(self._consumer.stop)
            self._consumer = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None
        log.info("collector=stopped")

    # ------------------------------------------------------------------ startup pieces

    async def _start_http(self) -> None:
        app = create_app(self.state, self.config.web, lambda: self._pool)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.host, self.config.http.port)
        await site.start()
        self.http_port = self._runner.addresses[0][1]
        warning = plain_http_warning(self.config.web, self.config.http.host)
        if warning:
            log.warning(warning)

    async def _prepare_database(self) -> None:
        assert self._pool is not None
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                async with self._pool.acquire() as connection:
                    if self._migrate:
                        applied = await apply_migrations(connection)
                        log.info("migrations=%s", ",".join(applied) or "up_to_date")
                    await self._registry.refresh(connection)
                self.state.database = ConnectionState.CONNECTED
                return
            except TRANSIENT_ERRORS as error:
                self.state.database = ConnectionState.DISCONNECTED
                delay_s = backoff.next_delay_s()
                log.warning("database=unavailable error=%s retry_in_s=%.1f", type(error).__name__, delay_s)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay_s)
                raise ServiceStopped()
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ callbacks from the consumer

    def _receive(self, message: InboundMessage) -> None:
        self.state.messages_received += 1
        self.state.unacked_received_at_s.append(message.received_at_s)
        self._queue.put_nowait(message)

    def _set_broker_state(self, state: ConnectionState) -> None:
        self.state.broker = state

    # ------------------------------------------------------------------ the pipeline

    async def _pipeline(self) -> None:
        """Gather and verify the next group while the previous one commits.

        Verifying and decoding is the collector's CPU work, a commit mostly
        PostgreSQL's (another process): overlapping them keeps both busy. Commits,
        and with them acks, still run one at a time in arrival order.
        """
        committing: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                group = await self._next_group()
                if not group:
                    continue
                items = await self._ingest(group)
                if committing is not None:
                    await committing
                if self._stopping.is_set():
                    break  # verified but not started: it stays unacked and the broker redelivers it
                committing = asyncio.create_task(self._commit(group, items), name="collector-commit")
        finally:
            if committing is not None:
                await committing

    async def _next_group(self) -> list[InboundMessage]:
        """Wait for a first message, then gather more until the group is full or the flush interval ends."""
        stop = asyncio.ensure_future(self._stopping.wait())
        first = asyncio.ensure_future(self._queue.get())
        try:
            await asyncio.wait([stop, first], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not first.done() or self._stopping.is_set():
            first.cancel()
            return []  # a message taken now stays unacked: the broker redelivers it
        group = [first.result()]
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self.config.ingest.flush_interval_ms / 1000
        while len(group) < self.config.ingest.flush_max_messages:
            if self._queue.empty():
                remaining_s = deadline_s - loop.time()
                if remaining_s <= 0 or self._stopping.is_set():
                    break
                try:
                    group.append(await asyncio.wait_for(self._queue.get(), remaining_s))
                except TimeoutError:
                    break
            else:
                group.append(self._queue.get_nowait())
        return group

    async def _commit(self, group: list[InboundMessage], items: list[GroupItem]) -> None:
        """Commit one verified group, then publish device acks and ack its messages in arrival order."""
        assert self._writer is not None and self._consumer is not None
        self.writer_heartbeat.beat(WRITER_STALL_S)
        try:
            result = await self._writer.commit_group(items, self._stopping)
        except CommitAbandoned:
            log.warning("group=abandoned messages=%d reason=stopping_while_database_down", len(group))
            return
        finally:
            self.writer_heartbeat.beat(math.inf)
        self._account(result)
        for (site_id, device_id), acked_seq in result.watermarks.items():
            self._consumer.publish_device_ack(site_id, device_id, acked_seq)
        for message in group:
            self._consumer.ack(message)
        for _ in group:  # acks go in arrival order, so these are the oldest
            self.state.unacked_received_at_s.popleft()

    async def _ingest(self, group: list[InboundMessage]) -> list[GroupItem]:
        prechecks = await self._precheck(group)
        items = []
        for message, precheck in zip(group, prechecks):
            items.append(self._ingest_one(message, precheck))
            if len(items) % INGEST_YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the commit in progress feed PostgreSQL
        if self._registry.may_refresh() and any(
            isinstance(item, Reject) and item.reason in _REGISTRY_REASONS for item in items
        ):
            assert self._pool is not None
            try:
                await self._registry.refresh(self._pool)
            except TRANSIENT_ERRORS as error:
                log.warning("registry=refresh_failed error=%s", type(error).__name__)
            else:
                items = [
                    self._ingest_one(message, precheck)
                    if isinstance(item, Reject) and item.reason in _REGISTRY_REASONS
                    else item
                    for message, precheck, item in zip(group, prechecks, items)
                ]
        return [self._limit(item) for item in items]

    async def _precheck(self, group: list[InboundMessage]) -> list[Precheck | None]:
        """The checks of the group's batches, done by the checker processes (None: not done)."""
        is_batch = [not _is_status(message.topic) for message in group]
        answers = await self._checkers.check(
            [
                (message.payload, message.received_at_s, self._topic_key(message.topic))
                for message, batch in zip(group, is_batch)
                if batch
            ]
        )
        if answers is None:
            return [None] * len(group)
        answer = iter(answers)
        return [next(answer) if batch else None for batch in is_batch]

    def _topic_key(self, topic: str) -> bytes | None:
        """The raw public key of the device ``topic`` names, for a checker to verify with."""
        parsed = parse_topic(topic)
        verifier = None if parsed is None else self._registry.verifier(parsed.site_id, parsed.device_id)
        return None if verifier is None else verifier.public_bytes_raw()

    def _ingest_one(self, message: InboundMessage, precheck: Precheck | None) -> GroupItem:
        if _is_status(message.topic):
            live = not message.retained and message.connected_for_s >= self.config.ingest.status_settle_s
            return ingest_status(message.topic, message.payload, message.received_at_s, live)
        return ingest_batch(
            message.topic,
            message.payload,
            message.received_at_s,
            self._registry.verifier,
            self.config.limits.max_message_bytes,
            precheck,
        )

    def _limit(self, item: GroupItem) -> GroupItem:
        """Apply the device's rate limit to a verified batch (see collector/ratelimit.py)."""
        if not isinstance(item, Accepted):
            return item
        batch = item.batch
        if self._limiter.admit(batch.site_id, batch.device_id, batch.event_count):
            return item
        detail = f"above {self.config.limits.device_events_per_s:g} events/s; the device resends it after its ack timeout"
        return reject_accepted(item, "rate_limited", detail)

    def _account(self, result: CommitResult) -> None:
        state = self.state
        state.batches_committed += result.new_batches
        state.duplicates += result.duplicates
        state.status_updates += result.status_updates
        state.rows_committed.update(result.rows)
        committed_s = time.time()
        for created_at_s in result.created_at_s:
            # A device clock ahead of ours would make it negative; the histogram has no bucket below 0.
            state.batch_latency_s.observe(max(0.0, committed_s - created_at_s))
        for reject in result.rejects:
            state.rejected[reject.reason] += 1
            log.warning(
                "reject=%s site=%s device=%s seq=%s detail=%r",
                reject.reason, reject.site_id, reject.device_id, reject.batch_seq, reject.detail,
            )  # fmt: skip
        log.debug(
            "group=committed batches=%d duplicates=%d rejects=%d rows=%d",
            result.new_batches, result.duplicates, len(result.rejects), sum(result.rows.values()),
        )  # fmt: skip

    async def _watch_database(self) -> None:
        """Keep ``state.database`` honest while no commits happen, for /readyz."""
        assert self._pool is not None
        while True:
            await asyncio.sleep(DATABASE_CHECK_INTERVAL_S)
            try:
                async with self._pool.acquire(timeout=DATABASE_CHECK_INTERVAL_S) as connection:
                    await connection.fetchval("SELECT 1", timeout=DATABASE_CHECK_INTERVAL_S)
            except TRANSIENT_ERRORS:
                self.state.database = ConnectionState.DISCONNECTED
            else:
                self.state.database = ConnectionState.CONNECTED

    async def _enforce_retention(self) -> None:
        """Drop expired partitions every ``retention.interval_s`` (collector/db/retention.py).

        The first pass waits one interval: a start-up stays light, and replays of
        old captures (the demo, tests) are not dropped while they are looked at.
        """
        assert self._pool is not None
        while True:
            await asyncio.sleep(self.config.retention.interval_s)
            try:
                await enforce_retention(
                    self._pool, self.config.retention, datetime.now(timezone.utc), self._partitions
                )
            except TRANSIENT_ERRORS as error:
                log.warning("retention=postponed error=%s", type(error).__name__)

    async def _beat_loop_heartbeat(self) -> None:
        """Proves to the watchdog thread that the event loop still turns."""
        while True:
            self.loop_heartbeat.beat(LOOP_STALL_S)
            await asyncio.sleep(1.0)

    def health(self) -> CollectorHealth:
        """What the systemd watchdog checks (after :meth:`start`)."""
        assert self._consumer is not None
        return CollectorHealth(
            self.state, self._consumer, self.loop_heartbeat, self.writer_heartbeat, self.config.mqtt.reconnect_max_s
        )

    def status_line(self) -> str:
        """One line for ``systemctl status``."""
        state = self.state
        return (
            f"broker {state.broker.value}, database {state.database.value}, "
            f"{state.batches_committed} batches committed, {state.pending_messages} pending"
        )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("task=%s crashed", task.get_name(), exc_info=task.exception())
        self._fail()

    def _fail(self) -> None:
        """A background task died of a bug: stop, and make run_service exit 1."""
        self.failed = True
        self._stopping.set()


async def run_service(config: CollectorConfig, *, migrate: bool = True) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code (0 clean, 1 failed)."""
    service = CollectorService(config, migrate=migrate)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.request_stop)
    notifier = SystemdNotifier.from_environment()
    watchdog: WatchdogFeeder | None = None
    try:
        await service.start()
        notifier.ready(service.status_line())
        watchdog = WatchdogFeeder(notifier, service.health().problems, service.status_line)
        watchdog.start()
        await service.wait_stop_requested()
    except ServiceStopped:
        pass
    finally:
        notifier.stopping("stopping: finishing the current commit group")
        if watchdog is not None:
            watchdog.stop()
        await service.stop()
    return 1 if service.failed else 0


def _is_status(topic: str) -> bool:
    parsed = parse_topic(topic)
    return parsed is not None and parsed.kind == "status"
