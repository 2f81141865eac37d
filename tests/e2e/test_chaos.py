"""Chaos: real agents publish 208,000 sightings in 2,080 signed batches from their spools while the
collector is SIGKILLed twice, PostgreSQL crashes and restarts, and Mosquitto is SIGKILLed and restarted.

Afterwards every batch is in the database exactly once and the rows match
what was sent, row for row.

The broker crash is made to lose messages for certain: Mosquitto writes a
snapshot (as its autosave would), then the collector stalls (SIGSTOP) so the
broker queues batches beyond the collector's Receive Maximum window in
memory — batches the agents already hold PUBACKs for — and then Mosquitto is
SIGKILLed. It restarts from the snapshot: stale sessions and retained acks,
the queued batches gone. Only the end-to-end acknowledgement (batches stay in
the spool until the collector confirms the commit, and are resent) brings
them back. PostgreSQL runs durable (fsync on) in its own server, since a
crash of the shared non-durable test server may lose commits the collector
already acked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from shared.devstack import MosquittoBroker, ThrowawayPostgres
from shared.devstack.broker import find_mosquitto
from shared.devstack.system import LocalSystem
from tests.e2e.conftest import batches_assigned, fetch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(find_mosquitto() is None, reason="the chaos test needs Mosquitto (MQTT 5, persistence)"),
]

AGENTS = 4
BATCHES_PER_AGENT = 520
SIGHTINGS_PER_BATCH = 100
#: Paced so the stream lasts ~50 s and every fault lands in the middle of it.
BATCHES_PER_S = 10.0
#: Agents notice a lost batch after this many seconds without progress (doubling up to the max).
AGENT_UPLINK = {
    "ack_timeout_s": 3.0,
    "ack_timeout_max_s": 6.0,
    "reconnect_min_s": 0.2,
    "reconnect_max_s": 2.0,
    "status_interval_s": 2.0,
}
#: A small Receive Maximum: while the collector stalls, the rest of the stream waits in the broker's memory.
COLLECTOR = {"mqtt": {"reconnect_min_s": 0.1, "reconnect_max_s": 1.0, "receive_maximum": 50}}


@pytest.fixture
def durable_postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres(durable=True)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def lossy_broker() -> Iterator[MosquittoBroker]:
    """Mosquitto saving its state only when told (``save_now``): a SIGKILL loses what arrived since."""
    broker = MosquittoBroker(autosave_interval_s=3_600)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


class Stream:
    """The running agents and what the database has committed so far."""

    def __init__(self, system: LocalSystem, dsn: str, configs: list[Path]) -> None:
        self.system, self.dsn = system, dsn
        self.agents = [
            subprocess.Popen(
                system.agent_loadgen_command(config, BATCHES_PER_AGENT, BATCHES_PER_S, wait_acked_s=150),
                stdout=subprocess.PIPE,
                stderr=open(system.workdir / f"{config.stem}.log", "wb"),
                text=True,
            )
            for config in configs
        ]
        self.started_s = time.monotonic()
        self.timeline: list[str] = []

    def committed(self) -> int:
        return fetch(self.dsn, "SELECT count(*) AS n FROM footfall.ingest_batches")[0]["n"]

    def at(self, offset_s: float, event: str) -> None:
        """Sleep until ``offset_s`` into the stream, then note ``event`` with the progress so far."""
        time.sleep(max(0.0, self.started_s + offset_s - time.monotonic()))
        committed = self.committed()
        assert 0 < committed < AGENTS * BATCHES_PER_AGENT, f"{event} must land mid-stream ({committed} committed)"
        self.timeline.append(f"{time.monotonic() - self.started_s:5.1f} s  {event:<28} {committed} batches committed")

    def wait(self, timeout_s: float) -> list[str]:
        outputs = []
        for agent in self.agents:
            output, _ = agent.communicate(timeout=timeout_s)
            assert agent.returncode == 0, f"agent failed: {output}\n" + "\n".join(self.timeline)
            outputs.append(output)
        return outputs

    def wait_offline_said(self, timeout_s: float) -> None:
        """The agents said "offline" as they stopped: give the collector the moment it takes to apply that."""
        deadline = time.monotonic() + timeout_s
        offline = "SELECT count(*) AS n FROM footfall.devices WHERE status_state = 'offline'"
        while fetch(self.dsn, offline)[0]["n"] < AGENTS and time.monotonic() < deadline:
            time.sleep(0.2)


def test_every_batch_exactly_once_through_crashes_of_collector_database_and_broker(
    tmp_path: Path, durable_postgres: ThrowawayPostgres, lossy_broker: MosquittoBroker
) -> None:
    dsn = durable_postgres.create_database("chaos")
    system = LocalSystem(tmp_path, dsn, lossy_broker.host, lossy_broker.port)
    system.migrate()
    system.add_site("mall", "Europe/Prague", name="Chaos mall")
    today = datetime.now(timezone.utc).date().isoformat()
    configs = [
        system.provision_device(
            "mall", f"sensor{n}", today, batch={"max_events": SIGHTINGS_PER_BATCH}, mqtt=AGENT_UPLINK
        )
        for n in range(AGENTS)
    ]
    try:
        collector = system.start_collector("c1", **COLLECTOR)
        stream = Stream(system, dsn, configs)

        stream.at(6, "SIGKILL collector")
        collector.kill()
        time.sleep(2)
        collector = system.start_collector("c1", **COLLECTOR)  # same client id: the broker kept its session

        stream.at(15, "SIGKILL PostgreSQL")
        durable_postgres.kill()
        time.sleep(2)
        durable_postgres.start()  # crash recovery on the same port

        stream.at(25, "Mosquitto snapshot, stall")
        lossy_broker.save_now()
        os.kill(collector.process.pid, signal.SIGSTOP)
        time.sleep(2)  # ~80 batches arrive: beyond the window of 50 they queue in the broker's memory
        stream.at(27, "SIGKILL Mosquitto")
        lossy_broker.kill()
        os.kill(collector.process.pid, signal.SIGCONT)
        time.sleep(2)
        lossy_broker.start()  # from the snapshot: the queued batches and newer retained acks are gone

        stream.at(35, "SIGKILL collector again")
        collector.kill()
        time.sleep(2)
        collector = system.start_collector("c1", **COLLECTOR)

        outputs = stream.wait(timeout_s=180)
        stream.wait_offline_said(timeout_s=30)
        final_metrics = collector.metrics()
    finally:
        system.close()
    timeline = "\n".join(stream.timeline)

    sent = {f"sensor{n}": batches_assigned(tmp_path / f"agent-mall-sensor{n}") for n in range(AGENTS)}
    assert sent == {device: BATCHES_PER_AGENT for device in sent}, outputs
    total_sightings = AGENTS * BATCHES_PER_AGENT * SIGHTINGS_PER_BATCH
    assert total_sightings >= 200_000 and AGENTS * BATCHES_PER_AGENT >= 2_000

    # Every batch exactly once: seqs 1..N per device, no gaps, each with all its rows and no row twice.
    ledger = fetch(
        dsn,
        """SELECT device_id, count(*) AS batches, min(batch_seq) AS first, max(batch_seq) AS last,
                  sum(sightings) AS sightings
           FROM footfall.ingest_batches GROUP BY device_id ORDER BY device_id""",
    )
    assert [tuple(r) for r in ledger] == [
        (device, BATCHES_PER_AGENT, 1, BATCHES_PER_AGENT, BATCHES_PER_AGENT * SIGHTINGS_PER_BATCH) for device in sorted(sent)
    ], timeline
    rows = fetch(
        dsn,
        """SELECT count(*) AS rows, count(DISTINCT (device_id, pseudonym)) AS distinct_rows,
                  count(DISTINCT (device_id, batch_seq)) AS batches
           FROM footfall.wifi_sightings""",
    )[0]
    assert tuple(rows) == (total_sightings, total_sightings, AGENTS * BATCHES_PER_AGENT), timeline
    partial = fetch(
        dsn,
        "SELECT device_id, batch_seq FROM footfall.wifi_sightings GROUP BY 1, 2 HAVING count(*) <> $1",
        SIGHTINGS_PER_BATCH,
    )
    assert partial == []
    assert fetch(dsn, "SELECT reason, count(*) FROM footfall.ingest_rejects GROUP BY reason") == []

    # The acks reached the end and the devices' status reports made it into their rows.
    devices = fetch(
        dsn, "SELECT acked_seq, status_state, agent_version, clock_skew_s FROM footfall.devices ORDER BY device_id"
    )
    for device in devices:
        assert device["acked_seq"] == BATCHES_PER_AGENT
        assert device["status_state"] == "offline" and device["agent_version"]  # said on a clean stop
        assert device["clock_skew_s"] is not None and abs(device["clock_skew_s"]) < 2.0  # same machine, same clock
    assert "footfall_collector_pending_messages 0" in final_metrics
    print(f"\n{timeline}")  # shown with -s: where each fault landed
