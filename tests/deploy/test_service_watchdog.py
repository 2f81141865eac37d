"""The agent and the collector tell systemd READY, feed the watchdog only while healthy, and say STOPPING.

Real components throughout: a real agent with its uplink on a real broker, a
real collector on real PostgreSQL whose commit is held up by a real lock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

import collector.service
import edge_agent.service
from collector.config import CollectorConfig, DatabaseConfig, HttpConfig, IngestConfig, MqttConfig
from collector.db.migrate import apply_migrations
from collector.service import CollectorService
from edge_agent.config import AgentConfig
from edge_agent.service import AgentService
from edge_agent.uplink import UplinkConfig
from edge_agent.wifi.ratchet import KeyRatchet
from shared.devstack import Broker
from shared.devstack.synthetic_capture import write_synthetic_capture
from shared.signing import DeviceSigner
from shared.topics import batch_topic
from tests.collector.collector_helpers import DEVICE, SITE, MqttTestClient, enroll, make_batch, sign
from tests.deploy.notify_socket import NotifySocket

WATCHDOG_S = 0.6


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    for key, value in sock.environment(WATCHDOG_S).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def agent_config(tmp_path: Path, broker: Broker) -> AgentConfig:
    state_dir = tmp_path / "state"
    DeviceSigner.generate().save(state_dir / "device.key")
    KeyRatchet.create(state_dir / "pseudonym.key", time.time())
    return AgentConfig(
        site_id=SITE, device_id=DEVICE, state_dir=state_dir, mqtt=UplinkConfig(host=broker.host, port=broker.port)
    )


def quiet_live_source(stop: threading.Event, stalled: threading.Event) -> Iterator[None]:
    """Like a live capture in a quiet shop: ticks with no frame, until told to hang."""
    while not stop.wait(0.05):
        if stalled.is_set():
            stop.wait()
        yield None


def test_agent_is_ready_feeds_while_healthy_and_stops_when_a_loop_stalls(
    tmp_path: Path, broker: Broker, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_agent.service, "SOURCE_STALL_S", 1.0)
    service = AgentService(agent_config(tmp_path, broker))
    stalled = threading.Event()
    source = threading.Thread(
        target=service.run_wifi, args=(quiet_live_source(service.stop_event, stalled), True), daemon=True
    )
    service.start()
    source.start()
    try:
        assert notify.wait_for("READY", "1")["STATUS"].startswith("wifi idle, broker ")
        notify.wait_for("WATCHDOG", "1")
        assert service.health.problems() == []

        stalled.set()  # the source loop stops turning
        notify.wait_for("STATUS", contains="unhealthy: source loop stuck", timeout_s=5)
        notify.drain(WATCHDOG_S)
        assert not any("WATCHDOG" in message for message in notify.drain(3 * WATCHDOG_S))

        service.uplink.stop()  # the uplink thread ends
        assert "uplink thread stopped" in service.health.problems()
    finally:
        service.stop()
        source.join(10)
        service.close()
    assert {"STOPPING": "1", "STATUS": "stopping: moving buffered events into the spool"} in notify.messages + notify.drain(1)


@pytest.fixture
def collector_config(pg_dsn: str, broker: Broker) -> CollectorConfig:
    if not broker.mqtt5:
        pytest.skip("the collector needs an MQTT 5 broker (Mosquitto)")
    return CollectorConfig(
        database=DatabaseConfig(dsn=pg_dsn),
        mqtt=MqttConfig(host=broker.host, port=broker.port, client_id=f"c-{uuid.uuid4().hex[:8]}", reconnect_max_s=0.5),
        ingest=IngestConfig(flush_interval_ms=10),
        http=HttpConfig(port=0),
    )


async def test_collector_stops_feeding_while_a_commit_is_stuck_behind_a_lock(
    collector_config: CollectorConfig, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collector.service, "WRITER_STALL_S", 0.5)
    signer = DeviceSigner.generate()
    publisher = MqttTestClient(broker.host, broker.port)
    locker = await asyncpg.connect(collector_config.database.dsn)
    try:
        pool = await asyncpg.create_pool(collector_config.database.dsn, min_size=1, max_size=1)
        async with pool.acquire() as connection:
            await apply_migrations(connection)
        await enroll(pool, signer)
        await pool.close()
        async with CollectorService(collector_config) as service:
            health = service.health()
            await wait_until(lambda: service.state.ready)
            assert health.problems() == []

            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE footfall.ingest_batches IN ACCESS EXCLUSIVE MODE")
            publisher.publish(batch_topic(SITE, DEVICE), sign(make_batch(1), signer))
            await wait_until(lambda: any("commit is stuck" in p for p in health.problems()), timeout_s=10)

            await transaction.rollback()
            await wait_until(lambda: service.state.batches_committed == 1)
            assert health.problems() == []
    finally:
        await locker.close()
        publisher.close()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def test_collector_process_says_ready_feeds_and_says_stopping(
    collector_config: CollectorConfig, tmp_path: Path
) -> None:
    notify = NotifySocket(tmp_path / "notify")
    env = {
        **os.environ,
        **notify.environment(WATCHDOG_S),
        "FOOTFALL_DATABASE_DSN": collector_config.database.dsn,
    }
    env.pop("WATCHDOG_PID", None)
    config_path = tmp_path / "collector.yaml"
    mqtt = collector_config.mqtt
    config_path.write_text(f"mqtt: {{host: {mqtt.host}, port: {mqtt.port}, client_id: {mqtt.client_id}}}\nhttp: {{port: 0}}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(config_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert notify.wait_for("READY", "1")["STATUS"].startswith("broker ")
        notify.wait_for("WATCHDOG", "1")
        process.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1")
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()


def test_agent_process_says_ready_and_on_sigterm_spools_what_it_holds_and_exits_cleanly(
    tmp_path: Path, broker: Broker
) -> None:
    """With the broker gone, a stop must not wait for acks that cannot come, nor count as a failure."""
    config = agent_config(tmp_path, broker)
    capture = tmp_path / "capture.pcap"
    write_synthetic_capture(capture, time.time() - 3_600, duration_s=3_600, phones=200)
    broker.stop()  # unreachable from the start
    config_path = tmp_path / "agent.yaml"
    config_path.write_text(
        f"site_id: {SITE}\ndevice_id: {DEVICE}\nstate_dir: {config.state_dir}\n"
        f"mqtt: {{host: {broker.host}, port: {broker.port}}}\nbatch: {{max_events: 20, max_delay_s: 0.5}}\n"
    )
    notify = NotifySocket(tmp_path / "notify")
    env = {**os.environ, **notify.environment(WATCHDOG_S)}
    env.pop("WATCHDOG_PID", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "--config", str(config_path), "replay", "--pcap", str(capture),
         "--speed", "200", "--wait-acked-s", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        notify.wait_for("READY", "1")
        notify.wait_for("WATCHDOG", "1")
        spool_path = config.spool_path
        deadline_s = time.monotonic() + 30
        while not (spool_path.exists() and spooled_events(spool_path)):
            assert time.monotonic() < deadline_s and process.poll() is None
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1")
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output.decode()
        assert b"stopped on request; unacknowledged batches stay in the spool" in output
        assert spooled_events(spool_path) > 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()


def spooled_events(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COALESCE(SUM(events), 0) FROM batches").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        db.close()
