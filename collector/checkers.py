"""Per-value checks of batch messages in worker processes, beside the commit path.

Checking every value of every event column (type, range, NaN, not in the
future) is ingest's costliest step, and it ran on the one thread that also
encodes the COPY: at full load that thread was the collector's limit while a
second core idled. :class:`ValueCheckers` runs
:func:`shared.protocol.check_message` over each group's batch messages in
``ingest.check_workers`` processes while the service thread commits the
previous group; the service thread then decodes the checked bytes without the
per-value checks, verifies the signature (it holds the registry) and writes.
With ``check_workers: 0`` the service thread does it all itself.

The answer for a message is a :class:`~collector.ingest.Precheck` — the same
reason and detail the full check in the service thread would give, so a
rejected message lands in ``ingest_rejects`` exactly as before. A worker that
dies (the OOM killer) breaks the pool: that group is checked in the service
thread and the next one starts a fresh pool, so no message is lost to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from collector.ingest import Precheck
from collector.state import SPAWN
from shared.protocol import check_message

log = logging.getLogger(__name__)

#: (payload, received_at_s): the checks bound timestamps by the time the message arrived.
Message = tuple[bytes, float]
#: How often a worker looks whether the service still runs.
PARENT_CHECK_S = 1.0


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: leave when the service is gone, even SIGKILLed; leave Ctrl-C to the service.

    A pool worker holds both ends of its own task queue, so a dead service
    never shows it an end of file; it would wait for work for ever.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def check_messages(messages: Sequence[Message]) -> list[tuple[str, str] | None]:
    """Worker side: the (reason, detail) of each message's first problem, None for a good one."""
    return [check_message(payload, received_at_s) for payload, received_at_s in messages]


class ValueCheckers:
    """A pool of ``workers`` checker processes (none: check in the caller's thread)."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the workers now, so the first group does not wait for them to import."""
        if self._workers:
            self._new_pool().submit(check_messages, [])

    async def check(self, messages: Sequence[Message]) -> list[Precheck] | None:
        """Each message's :class:`Precheck`, in order; None when there are no workers (check in place)."""
        if not self._workers:
            return None
        if not messages:
            return []
        pool = self._pool or self._new_pool()
        loop = asyncio.get_running_loop()
        size = -(-len(messages) // self._workers)  # ceiling: one contiguous share per worker
        shares = [messages[start : start + size] for start in range(0, len(messages), size)]
        try:
            answers = await asyncio.gather(*(loop.run_in_executor(pool, check_messages, share) for share in shares))
        except BrokenProcessPool:
            log.warning("checkers=broken action=check_in_service_thread_and_restart")
            self._pool = None
            pool.shutdown(wait=False)
            answers = [check_messages(messages)]
        return [Precheck(error) for share in answers for error in share]

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        self._pool = ProcessPoolExecutor(
            max_workers=self._workers, mp_context=SPAWN, initializer=exit_with_parent, initargs=(os.getpid(),)
        )
        return self._pool
