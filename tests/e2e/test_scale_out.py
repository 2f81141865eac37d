"""Scale-out: two collector processes on an MQTT 5 shared subscription split the work; SIGKILL one
mid-stream and the other carries on with nothing lost or doubled.

Mosquitto keeps routing a share of the batches to a dead member's session
until that session expires, so the collectors run with a short
``session_expiry_s`` (as the example config advises for shared groups). The
batches stranded in the dead session are never lost: the agents still hold
them in their spools and resend them after their ack timeout, and the
surviving collector commits them.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timezone

import pytest

from shared.devstack import Broker
from shared.devstack.system import CollectorProcess, LocalSystem
from tests.collector.collector_helpers import metric_value
from tests.e2e.conftest import fetch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

AGENTS = 3
BATCHES_PER_AGENT = 200
SIGHTINGS_PER_BATCH = 50
AGENT_UPLINK = {"ack_timeout_s": 2.0, "ack_timeout_max_s": 4.0, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0}
SHARED = {"mqtt": {"shared_group": "collectors", "session_expiry_s": 3, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0}}


def counters(collector: CollectorProcess) -> tuple[float, float]:
    """(messages received, batches committed) from the collector's own /metrics."""
    text = collector.metrics()
    return (
        metric_value(text, "footfall_collector_messages_received_total"),
        metric_value(text, "footfall_collector_batches_committed_total"),
    )


def test_two_collectors_share_the_work_and_a_killed_one_loses_nothing(system: LocalSystem, pg_dsn: str, broker: Broker) -> None:
    if not broker.shared_subscriptions:
        pytest.skip("the broker has no shared subscriptions")
    today = datetime.now(timezone.utc).date().isoformat()
    configs = [
        system.provision_device("lab", f"door{n}", today, batch={"max_events": SIGHTINGS_PER_BATCH}, mqtt=AGENT_UPLINK)
        for n in range(AGENTS)
    ]
    first = system.start_collector("c1", **SHARED)
    second = system.start_collector("c2", **SHARED)
    agents = [
        subprocess.Popen(
            system.agent_loadgen_command(config, BATCHES_PER_AGENT, rate_per_s=20, wait_acked_s=90),
            stdout=subprocess.PIPE,
            stderr=open(system.workdir / f"{config.stem}.log", "wb"),
            text=True,
        )
        for config in configs
    ]
    deadline_s = time.monotonic() + 30
    while min(counters(first)[1], counters(second)[1]) < 20 and time.monotonic() < deadline_s:
        time.sleep(0.2)
    shares = [counters(first), counters(second)]
    assert all(received > 0 and committed >= 20 for received, committed in shares), shares  # both got work
    committed_before_kill = fetch(pg_dsn, "SELECT count(*) AS n FROM footfall.ingest_batches")[0]["n"]
    assert committed_before_kill < AGENTS * BATCHES_PER_AGENT, "the kill must land mid-stream"
    second.kill()

    for agent in agents:
        output, _ = agent.communicate(timeout=120)
        assert agent.returncode == 0, output
    survivor_received, survivor_committed = counters(first)
    assert survivor_committed > shares[0][1]  # the survivor took over the dead one's share

    total = AGENTS * BATCHES_PER_AGENT
    ledger = fetch(
        pg_dsn,
        """SELECT count(*) AS batches, count(DISTINCT (device_id, batch_seq)) AS distinct_batches,
                  sum(sightings) AS sightings FROM footfall.ingest_batches""",
    )[0]
    assert tuple(ledger) == (total, total, total * SIGHTINGS_PER_BATCH)
    rows = fetch(
        pg_dsn, "SELECT count(*) AS n, count(DISTINCT (device_id, pseudonym)) AS distinct_rows FROM footfall.wifi_sightings"
    )[0]
    assert tuple(rows) == (total * SIGHTINGS_PER_BATCH, total * SIGHTINGS_PER_BATCH)
    acked = fetch(pg_dsn, "SELECT min(acked_seq) AS low, max(acked_seq) AS high FROM footfall.devices")[0]
    assert tuple(acked) == (BATCHES_PER_AGENT, BATCHES_PER_AGENT)
    assert fetch(pg_dsn, "SELECT count(*) AS n FROM footfall.ingest_rejects")[0]["n"] == 0
    print(f"\nbefore the kill: c1 received/committed {shares[0]}, c2 {shares[1]}; c1 at the end {survivor_received, survivor_committed}")
