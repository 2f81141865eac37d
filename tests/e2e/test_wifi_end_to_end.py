"""A real capture through agent → broker → collector → PostgreSQL, with crashes and outages.

Every one of the capture's probe requests must end up in ``wifi_sightings``
exactly once (sum of sighting frame counts), whatever happens in between.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.conftest import BRNO_DAY, BRNO_PROBE_REQUESTS, batches_assigned, fetch, spooled_batches
from tests.realdata import require_real_data

pytestmark = pytest.mark.slow

#: Small, frequent batches so a crash lands mid-stream with work on both sides of it.
SMALL_BATCHES = {"batch": {"max_events": 200, "max_delay_s": 0.2}}


def _committed_batches(dsn: str) -> int:
    return fetch(dsn, "SELECT count(*) AS n FROM footfall.ingest_batches")[0]["n"]


def _assert_every_frame_exactly_once(dsn: str, batches_sent: int) -> None:
    totals = fetch(
        dsn,
        """SELECT count(*) AS rows, coalesce(sum(frames), 0) AS frames,
                  count(DISTINCT (batch_seq, pseudonym, window_start)) AS distinct_rows
           FROM footfall.wifi_sightings""",
    )[0]
    batches = fetch(
        dsn,
        """SELECT count(*) AS n, min(batch_seq) AS first, max(batch_seq) AS last,
                  coalesce(sum(sightings), 0) AS sightings
           FROM footfall.ingest_batches""",
    )[0]
    rejects = fetch(dsn, "SELECT reason, count(*) AS n FROM footfall.ingest_rejects GROUP BY reason")
    assert rejects == []
    assert totals["frames"] == BRNO_PROBE_REQUESTS
    assert totals["rows"] == totals["distinct_rows"] == batches["sightings"]
    assert (batches["n"], batches["first"], batches["last"]) == (batches_sent, 1, batches_sent)


def test_brno_capture_arrives_exactly_once_across_a_collector_sigkill(system, pg_dsn):
    capture = require_real_data(BRNO_DAY)
    config = system.provision_device("lab", "pos1", "2022-11-22", **SMALL_BATCHES)
    collector = system.start_collector("c1")
    # The capture spans ~3.9 h; at 2000x it streams for ~7 s, long enough to crash in the middle.
    agent = subprocess.Popen(
        system.agent_replay_command(config, capture, speed="2000", wait_acked_s=90),
        stdout=subprocess.DEVNULL,
        stderr=open(system.workdir / "agent.log", "wb"),
    )
    deadline = time.monotonic() + 30
    while _committed_batches(pg_dsn) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    collector.kill()
    committed_at_kill = _committed_batches(pg_dsn)
    time.sleep(1.5)  # the agent keeps capturing and publishing into the broker meanwhile
    system.start_collector("c1")  # same client id: the broker kept the session and its queue
    assert agent.wait(120) == 0, (system.workdir / "agent.log").read_text()[-3000:]

    batches_sent = batches_assigned(system.workdir / "agent-lab-pos1")
    assert 10 <= committed_at_kill < batches_sent, "the kill must land mid-stream"
    _assert_every_frame_exactly_once(pg_dsn, batches_sent)
    acked = fetch(pg_dsn, "SELECT acked_seq FROM footfall.devices WHERE device_id = 'pos1'")[0]["acked_seq"]
    assert acked == batches_sent


def test_batches_wait_in_the_spool_while_the_broker_is_down(system, pg_dsn, broker):
    capture = require_real_data(BRNO_DAY)
    config = system.provision_device("lab", "pos1", "2022-11-22", **SMALL_BATCHES)
    system.start_collector("c1")
    broker.stop()
    agent = subprocess.Popen(
        system.agent_replay_command(config, capture, speed="max", wait_acked_s=90),
        stdout=subprocess.DEVNULL,
        stderr=open(system.workdir / "agent.log", "wb"),
    )
    state_dir = system.workdir / "agent-lab-pos1"
    deadline = time.monotonic() + 30
    while spooled_batches(state_dir) < 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # the broker stays down a while longer
    held = spooled_batches(state_dir)
    assert held >= 40, "the whole capture should be waiting in the spool"
    assert fetch(pg_dsn, "SELECT count(*) AS n FROM footfall.wifi_sightings")[0]["n"] == 0
    broker.restart()
    assert agent.wait(120) == 0, (system.workdir / "agent.log").read_text()[-3000:]
    assert spooled_batches(state_dir) == 0
    _assert_every_frame_exactly_once(pg_dsn, batches_assigned(state_dir))
