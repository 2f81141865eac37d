"""The collector's analytics task: keep visits, trajectory and footfall up to date.

Every ``interval_s`` it runs a round (:mod:`collector.analytics.recompute`)
for each site with dirty buckets, so a committed crossing shows in
``footfall`` within a couple of seconds; every ``CLOSE_INTERVAL_S`` it also
visits sites with open visits, so visits close as the watermark moves on even
when no new data comes. The queue lives in the database: any collector with
analytics enabled may do the work, and one that is busy elsewhere is skipped
per site by an advisory lock. A round that fails leaves its buckets queued;
the site is retried after ``FAILED_SITE_BACKOFF_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg

from collector.analytics.recompute import RoundResult, run_site_round
from collector.config import AnalyticsConfig
from collector.db.partitions import PartitionManager
from collector.db.writer import TRANSIENT_ERRORS
from collector.state import AnalyticsState

log = logging.getLogger(__name__)

CLOSE_INTERVAL_S = 30.0
FAILED_SITE_BACKOFF_S = 60.0

_DIRTY_SITES = "SELECT DISTINCT site_id FROM footfall.analytics_dirty"
_BACKLOG = """
SELECT site_id, count(*) AS buckets, extract(epoch FROM now() - min(marked_at)) AS oldest_s
FROM footfall.analytics_dirty GROUP BY site_id
"""
_OPEN_SITES = "SELECT DISTINCT site_id FROM footfall.visits WHERE NOT closed"


def pause_after_round_s(round_s: float, config: AnalyticsConfig) -> float:
    """How long to wait after a round of ``round_s`` seconds: keeps analytics within ``max_busy_share``.

    A round recomputes whole buckets, so under a burst each one grows; spacing
    them out lets queued buckets coalesce instead of being recomputed again
    and again while ingest waits for the CPU. ``max_pause_s`` caps the wait:
    after a catch-up round of minutes (a million never-seen devices took four
    on 2 cores), three times that without a round would leave ``footfall``
    stale for a quarter of an hour.
    """
    share = config.max_busy_share
    return max(config.interval_s, min(config.max_pause_s, round_s * (1 - share) / share))


class AnalyticsTask:
    """Runs analytics rounds against ``pool`` until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: AnalyticsConfig = AnalyticsConfig(),
        partitions: PartitionManager | None = None,
        state: AnalyticsState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._config = config
        self._partitions = partitions or PartitionManager()
        self.state = state or AnalyticsState()
        self._clock = clock
        self._failed_until_s: dict[str, float] = {}
        self._next_close_s = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started_s = time.perf_counter()
            try:
                await self.tick()
            except TRANSIENT_ERRORS as error:
                log.warning("analytics=waiting error=%s", type(error).__name__)
            pause_s = pause_after_round_s(time.perf_counter() - started_s, self._config)
            try:
                await asyncio.wait_for(stop.wait(), pause_s)
            except TimeoutError:
                pass

    async def tick(self) -> dict[str, RoundResult]:
        """One pass over the sites that need work; returns what each round did."""
        now_s = self._clock()
        backlog = await self._pool.fetch(_BACKLOG)
        self.state.backlog_buckets = sum(row["buckets"] for row in backlog)
        self.state.backlog_oldest_s = float(max((row["oldest_s"] for row in backlog), default=0.0))
        sites = {row["site_id"] for row in backlog}
        if now_s >= self._next_close_s:
            sites |= {row[0] for row in await self._pool.fetch(_OPEN_SITES)}
            self._next_close_s = now_s + CLOSE_INTERVAL_S
        results = {}
        for site_id in sorted(sites):
            if self._failed_until_s.get(site_id, 0.0) > now_s:
                continue
            started_s = time.perf_counter()
            try:
                result = await run_site_round(
                    self._pool, site_id, self._partitions, now_s, self._config.max_lateness_s
                )
            except TRANSIENT_ERRORS:
                raise
            except Exception:
                log.exception("analytics=failed site=%s retry_in_s=%.0f", site_id, FAILED_SITE_BACKOFF_S)
                self.state.failures += 1
                self._failed_until_s[site_id] = now_s + FAILED_SITE_BACKOFF_S
                continue
            finally:
                self.state.seconds_total += time.perf_counter() - started_s
            if result is not None:
                self.state.rounds += 1
                results[site_id] = result
                if result.dirty_buckets:
                    log.debug(
                        "analytics=round site=%s dirty=%d visits_written=%d footfall_buckets=%d",
                        site_id, result.dirty_buckets, result.visits_written, result.footfall_buckets,
                    )  # fmt: skip
        return results

    async def drain(self) -> None:
        """Run rounds until no bucket is queued (tests, rebuilds); a failing round raises."""
        while sites := [row[0] for row in await self._pool.fetch(_DIRTY_SITES)]:
            for site_id in sites:
                await run_site_round(self._pool, site_id, self._partitions, self._clock(), self._config.max_lateness_s)
