"""Per-device token buckets: the average holds, big batches still pass, devices do not share budgets."""

from __future__ import annotations

from collector.ratelimit import DeviceRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s


def test_burst_then_the_sustained_rate() -> None:
    clock = FakeClock()
    limiter = DeviceRateLimiter(events_per_s=100, burst_events=1_000, clock=clock)
    admitted = sum(limiter.admit("s", "d", 100) for _ in range(20))
    assert admitted == 10  # the burst, and not one batch more at the same instant
    clock.now_s += 1.0  # refills 100 events: one more batch
    assert limiter.admit("s", "d", 100)
    assert not limiter.admit("s", "d", 100)


def test_a_batch_larger_than_the_burst_passes_when_full_and_leaves_debt() -> None:
    clock = FakeClock()
    limiter = DeviceRateLimiter(events_per_s=100, burst_events=1_000, clock=clock)
    assert limiter.admit("s", "d", 3_000)  # never starved for good
    clock.now_s += 19.9  # the debt of 2,000 takes 20 s to pay
    assert not limiter.admit("s", "d", 1)
    clock.now_s += 0.2
    assert limiter.admit("s", "d", 1)


def test_devices_have_their_own_buckets() -> None:
    limiter = DeviceRateLimiter(events_per_s=1, burst_events=10, clock=FakeClock())
    assert limiter.admit("s", "a", 10)
    assert not limiter.admit("s", "a", 1)
    assert limiter.admit("s", "b", 10)
    assert limiter.admit("t", "a", 10)


def test_zero_rate_means_no_limit() -> None:
    limiter = DeviceRateLimiter(events_per_s=0, burst_events=1, clock=FakeClock())
    assert not limiter.enabled
    assert all(limiter.admit("s", "d", 1_000_000) for _ in range(100))
