"""Batch checks in worker processes, beside the commit path.

Checking every value of every event column (type, range, NaN, not in the
future) and the Ed25519 signature are ingest's costliest steps, and they ran
on the one thread that also encodes the COPY: at full load that thread was
the collector's limit while a second core idled. :class:`Checkers` runs
:func:`precheck` over each group's batch messages in ``ingest.check_workers``
processes while the service thread commits the previous group; the service
thread then decodes the checked bytes without the per-value checks and
writes. With ``check_workers: 0`` the service thread does it all itself.

The service hands each message over with the key its registry holds for the
device the *topic* names; the worker says which key, if any, the signature
verified with, and the service trusts that only when it is the key of the
device the *body* names (collector/ingest.py) — so a worker never decides
whom to trust, and a topic naming another device is verified in place as
before. A message's :class:`~collector.ingest.Precheck` gives the same reason
and detail as the full check in the service thread (tests/collector/
test_ingest.py compares both on every hostile case), so a rejected message
lands in ``ingest_rejects`` exactly as before. A worker that
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
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.ingest import Precheck
from collector.state import SPAWN
from shared.protocol import ProtocolError, decode_body, open_message
from shared.signing import is_valid_signature, load_verifier

log = logging.getLogger(__name__)

#: (payload, received_at_s, raw public key of the topic's device or None): timestamps are
#: bounded by the time the message arrived.
Message = tuple[bytes, float, bytes | None]
#: Devices whose verifier a worker keeps built (building one costs as much as a verification).
VERIFIER_CACHE_SIZE = 4096
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


def precheck(payload: bytes, received_at_s: float, key: bytes | None) -> Precheck:
    """Decode with every check, then verify the signature with ``key`` (when given)."""
    try:
        signed = open_message(payload)
        decode_body(signed.body, now_s=received_at_s)
    except ProtocolError as error:
        return Precheck((error.reason, error.detail))
    if key is not None and is_valid_signature(_verifier(key), signed.body, signed.signature):
        return Precheck(None, key)
    return Precheck(None)


@lru_cache(maxsize=VERIFIER_CACHE_SIZE)
def _verifier(key: bytes) -> Ed25519PublicKey:
    return load_verifier(key)


def check_messages(messages: Sequence[Message]) -> list[Precheck]:
    """Worker side: the :class:`Precheck` of each message, in order."""
    return [precheck(*message) for message in messages]


class Checkers:
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
        return [answer for share in answers for answer in share]

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        self._pool = ProcessPoolExecutor(
            max_workers=self._workers, mp_context=SPAWN, initializer=exit_with_parent, initargs=(os.getpid(),)
        )
        return self._pool
