"""Per-device rate limit: a token bucket of events, so one device cannot crowd out the rest.

Each enrolled device has a bucket holding up to ``burst_events`` tokens that
refills at ``events_per_s``. A verified batch is admitted while the bucket is
not empty and then takes its events out, possibly leaving the bucket in debt:
a batch larger than the burst still gets through when the bucket is full, and
the debt holds the device's average to the configured rate.

A batch that is not admitted becomes a ``rate_limited`` reject — stored and
acknowledged like any other — rather than being left unacknowledged. Why:

* Unacked messages hold slots of the MQTT Receive Maximum window, and an MQTT 5
  broker redelivers them only after a reconnect; parking a throttled device's
  batches there would stall every other device behind it.
* Nothing is lost: a rejected batch never enters ``ingest_batches``, so the
  device's cumulative ``acked_seq`` stops below it, the batch stays in the
  device's spool, and the device sends it again after its ack timeout, which
  doubles while it gets no progress — backoff without any new protocol.

The check runs after the signature is verified, so nobody can spend a
device's budget by publishing junk on its topic. Buckets live in one
collector's memory: with N collectors on a shared subscription a device may
reach N times the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """Tokens refilled continuously at ``rate_per_s`` up to ``capacity``; may go negative (debt)."""

    rate_per_s: float
    capacity: float
    tokens: float
    updated_s: float

    def take(self, amount: float, now_s: float) -> bool:
        """Refill up to ``now_s``; if any token is left, take ``amount`` and return True."""
        self.tokens = min(self.capacity, self.tokens + (now_s - self.updated_s) * self.rate_per_s)
        self.updated_s = now_s
        if self.tokens <= 0:
            return False
        self.tokens -= amount
        return True


class DeviceRateLimiter:
    """One :class:`TokenBucket` per (site_id, device_id); ``events_per_s == 0`` admits everything."""

    def __init__(
        self, events_per_s: float, burst_events: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._events_per_s = events_per_s
        self._burst_events = burst_events
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self._events_per_s > 0

    def admit(self, site_id: str, device_id: str, events: int) -> bool:
        """Whether a batch of ``events`` from this device may be committed now."""
        if not self.enabled:
            return True
        now_s = self._clock()
        bucket = self._buckets.get((site_id, device_id))
        if bucket is None:
            bucket = TokenBucket(self._events_per_s, self._burst_events, self._burst_events, now_s)
            self._buckets[(site_id, device_id)] = bucket
        return bucket.take(events, now_s)
