"""A long analytics round must not stall the collector: probes answer while it computes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg

from collector.config import CollectorConfig
from collector.db.writer import Writer
from collector.service import CollectorService
from collector.state import CollectorState
from shared.signing import DeviceSigner
from tests.collector.collector_helpers import NOW_S, accepted, make_batch, sighting_rows

#: A backlog like the one after an outage: this many fresh devices queued for one round.
BATCHES, ROWS_PER_BATCH = 30, 2_000
#: An orchestrator's probe timeout is a second or more; the loop must answer well within it.
MOST_PROBE_SECONDS = 0.5


async def test_probes_answer_while_a_long_analytics_round_computes(
    config: CollectorConfig, db: asyncpg.Pool, enrolled: DeviceSigner
) -> None:
    writer = Writer(db, CollectorState())
    for seq in range(1, BATCHES + 1):
        rows = sighting_rows(ROWS_PER_BATCH, int(NOW_S) - 600 + seq * 10, pseudonym_base=seq * ROWS_PER_BATCH)
        await writer.commit([accepted(make_batch(seq, sightings=rows), enrolled)])

    slowest_probe_s = 0.0
    async with CollectorService(config, migrate=False) as service, aiohttp.ClientSession() as http:
        analytics = service.state.analytics
        deadline = time.monotonic() + 120
        while not (analytics.rounds and await db.fetchval("SELECT count(*) FROM footfall.analytics_dirty") == 0):
            assert time.monotonic() < deadline, "analytics did not finish the backlog in 2 minutes"
            started = time.perf_counter()
            async with http.get(f"http://127.0.0.1:{service.http_port}/healthz") as response:
                assert response.status == 200
            slowest_probe_s = max(slowest_probe_s, time.perf_counter() - started)
            await asyncio.sleep(0.05)
        round_s = analytics.seconds_total

    visits = await db.fetchval("SELECT count(*) FROM footfall.visits")
    assert visits >= BATCHES * ROWS_PER_BATCH // 3  # the round did the work: one visit per linked phone at least
    assert round_s > 2 * MOST_PROBE_SECONDS, f"the round took only {round_s:.2f} s: the test proves nothing"
    assert slowest_probe_s < MOST_PROBE_SECONDS, f"/healthz took {slowest_probe_s:.2f} s during a {round_s:.1f} s round"
