"""A real agent above its rate limit: throttled batches are rejected as ``rate_limited`` and acked,
yet every one of them is committed exactly once in the end, because the agent keeps them in its
spool and resends them after its ack timeout."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone

import pytest

from shared.devstack.system import LocalSystem
from tests.collector.collector_helpers import metric_value
from tests.e2e.conftest import fetch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BATCHES = 120
SIGHTINGS_PER_BATCH = 100
#: 20 batches/s sustained, 30 at once: the agent, unthrottled, sends far faster.
LIMITS = {"device_events_per_s": 2_000, "device_burst_events": 3_000}


def test_throttled_batches_come_back_and_commit_exactly_once(system: LocalSystem, pg_dsn: str) -> None:
    config = system.provision_device(
        "lab",
        "eager",
        datetime.now(timezone.utc).date().isoformat(),
        batch={"max_events": SIGHTINGS_PER_BATCH},
        mqtt={"ack_timeout_s": 1.0, "ack_timeout_max_s": 2.0},
    )
    collector = system.start_collector("c1", limits=LIMITS)
    agent = subprocess.run(
        system.agent_loadgen_command(config, BATCHES, wait_acked_s=60), capture_output=True, text=True, timeout=90
    )
    assert agent.returncode == 0, agent.stdout + agent.stderr[-2000:]

    throttled = metric_value(collector.metrics(), 'footfall_collector_rejected_total{reason="rate_limited"}', default=0)
    assert throttled > 0, "the agent must have run into the limit"
    rejects = fetch(pg_dsn, "SELECT DISTINCT reason FROM footfall.ingest_rejects")
    assert [r["reason"] for r in rejects] == ["rate_limited"]
    ledger = fetch(
        pg_dsn,
        "SELECT count(*) AS n, min(batch_seq) AS first, max(batch_seq) AS last, sum(sightings) AS rows"
        " FROM footfall.ingest_batches",
    )[0]
    assert tuple(ledger) == (BATCHES, 1, BATCHES, BATCHES * SIGHTINGS_PER_BATCH)
    rows = fetch(pg_dsn, "SELECT count(*) AS n, count(DISTINCT pseudonym) AS distinct_rows FROM footfall.wifi_sightings")[0]
    assert tuple(rows) == (BATCHES * SIGHTINGS_PER_BATCH, BATCHES * SIGHTINGS_PER_BATCH)
