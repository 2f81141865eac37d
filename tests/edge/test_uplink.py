"""The uplink against a real Mosquitto, with a stand-in collector that acks like the real one."""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.spool import Spool
from edge_agent.uplink import Uplink, UplinkConfig, backoff_delay_s
from shared.config import ConfigError, build
from shared.signing import DeviceSigner
from tests.edge.edge_helpers import DEVICE, SITE, FakeCollector, message_maker, wait_for_status

REPO = Path(__file__).resolve().parents[2]
#: Fast timings so outages and resends fit in a test.
FAST = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.5, "ack_timeout_s": 1.0, "keepalive_s": 5}


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool.sqlite3")
    yield spool
    spool.close()


@pytest.fixture
def start_uplink(broker, spool: Spool) -> Iterator[Callable[..., Uplink]]:  # type: ignore[no-untyped-def]
    started: list[Uplink] = []

    def start(**overrides: object) -> Uplink:
        config = UplinkConfig(host=broker.host, port=broker.port, **{**FAST, **overrides})  # type: ignore[arg-type]
        uplink = Uplink(config, spool, SITE, DEVICE, status_provider=lambda: {"agent_version": "test"})
        uplink.start()
        started.append(uplink)
        return uplink

    yield start
    for uplink in started:
        uplink.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def append(spool: Spool, signer: DeviceSigner, count: int) -> list[int]:
    make = message_maker(signer)
    return [spool.append(make, 3) for _ in range(count)]


# -- pure parts ---------------------------------------------------------------------------


def test_backoff_is_full_jitter_within_the_exponential_cap() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling_s = min(60.0, 1.0 * 2**attempt)
        delays = [backoff_delay_s(attempt, 1.0, 60.0, rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling_s for d in delays)
        assert max(delays) > 0.9 * ceiling_s and min(delays) < 0.1 * ceiling_s  # spread over the whole window
    assert backoff_delay_s(10_000, 1.0, 60.0, rng) <= 60.0  # no overflow however long the outage
    same = [backoff_delay_s(3, 1.0, 60.0, random.Random(1)) for _ in range(2)]
    assert same[0] == same[1]


def test_config_defaults_and_installer_errors() -> None:
    config = build(UplinkConfig, {"host": "broker.example", "tls": True, "port": 8883})
    assert (config.ack_timeout_s, config.max_inflight, config.reconnect_max_s) == (30.0, 20, 60.0)
    with pytest.raises(ConfigError, match="tls: true"):
        build(UplinkConfig, {"ca_path": "/etc/footfall/ca.pem"})
    with pytest.raises(ConfigError, match="together"):
        build(UplinkConfig, {"tls": True, "cert_path": "/etc/footfall/device.pem"})
    with pytest.raises(ConfigError, match="ack_timeout_s"):
        build(UplinkConfig, {"ack_timeout_s": "soon"})


# -- against a real broker ------------------------------------------------------------------


def test_batches_are_deleted_only_after_the_collector_acks(
    broker, spool: Spool, signer: DeviceSigner, start_uplink, collector_factory  # type: ignore[no-untyped-def]
) -> None:
    collector: FakeCollector = collector_factory(acking=False)
    append(spool, signer, 50)
    uplink = start_uplink(max_inflight=5, ack_timeout_s=30.0)
    window: list[int] = []
    assert wait_until(lambda: window.append(uplink.stats().awaiting_puback) or uplink.stats().awaiting_commit == 50, 10)
    assert max(window) <= 5  # flow control
    assert sorted(set(collector.received)) == list(range(1, 51))
    assert collector.received[:50] == list(range(1, 51))  # in seq order
    assert spool.stats().batches == 50  # PUBACKed, but not committed: kept

    collector.publish_ack(collector.committed_through)
    assert uplink.wait_idle(10)
    stats = uplink.stats()
    assert (stats.acked_seq, stats.awaiting_commit, stats.connection) == (50, 0, "connected")

    append(spool, signer, 10)  # and new batches keep flowing
    collector.acking = True
    assert uplink.wait_idle(10)
    assert uplink.stats().acked_seq == 60


def test_broker_down_at_start_then_everything_arrives(
    broker, spool: Spool, signer: DeviceSigner, start_uplink, collector_factory  # type: ignore[no-untyped-def]
) -> None:
    broker.stop()
    uplink = start_uplink()
    append(spool, signer, 20)
    assert wait_until(lambda: uplink.stats().connect_failures >= 3, 10)
    time.sleep(1.0)
    append(spool, signer, 20)
    assert spool.stats().batches == 40 and uplink.stats().connection != "connected"

    broker.start()
    collector = collector_factory()
    assert uplink.wait_idle(20)
    assert collector.committed_through == 40
    assert uplink.stats().connection == "connected"


def test_broker_killed_mid_stream_loses_nothing(
    broker, spool: Spool, signer: DeviceSigner, start_uplink, collector_factory  # type: ignore[no-untyped-def]
) -> None:
    collector = collector_factory()
    uplink = start_uplink()
    make = message_maker(signer)

    def pipeline() -> None:
        for _ in range(300):
            spool.append(make, 3)
            time.sleep(0.005)

    thread = threading.Thread(target=pipeline)
    thread.start()
    assert collector.wait_for(lambda c: len(c.received) >= 60, 10)
    broker.kill()  # whatever it held in memory is gone
    time.sleep(0.5)
    broker.start()
    thread.join()
    assert uplink.wait_idle(30), uplink.stats()
    assert collector.committed_through == 300
    assert set(collector.received) == set(range(1, 301))
    assert uplink.stats().connection_losses >= 1


def test_collector_silence_triggers_a_resend(
    broker, spool: Spool, signer: DeviceSigner, start_uplink, collector_factory  # type: ignore[no-untyped-def]
) -> None:
    collector: FakeCollector = collector_factory(acking=False)
    append(spool, signer, 5)
    uplink = start_uplink(ack_timeout_s=0.5)
    assert collector.wait_for(lambda c: c.received.count(1) >= 2, 10)  # sent again, unasked
    assert wait_until(lambda: uplink.stats().resends >= 1, 5)  # stats are a snapshot of the last turn
    assert spool.stats().batches == 5
    collector.acking = True
    collector.publish_ack(collector.committed_through)
    assert uplink.wait_idle(10)


def test_an_ack_above_every_assigned_seq_is_ignored(
    broker, spool: Spool, signer: DeviceSigner, start_uplink, collector_factory, caplog  # type: ignore[no-untyped-def]
) -> None:
    collector: FakeCollector = collector_factory(acking=False)
    append(spool, signer, 3)
    with caplog.at_level(logging.WARNING, logger="edge_agent.uplink"):
        collector.publish_ack(1000)
        uplink = start_uplink()
        assert wait_until(lambda: uplink.stats().awaiting_commit == 3, 10)
        time.sleep(0.3)
    assert spool.stats().batches == 3
    assert len([r for r in caplog.records if "ignored the collector's ack of seq 1000" in r.getMessage()]) == 1
    collector.publish_ack(3)
    assert uplink.wait_idle(10)


def test_status_online_with_details_then_offline_on_stop(
    broker, spool: Spool, signer: DeviceSigner, start_uplink  # type: ignore[no-untyped-def]
) -> None:
    append(spool, signer, 2)
    uplink = start_uplink()
    status = wait_for_status(broker.host, broker.port, "online")
    assert status is not None
    assert status["agent_version"] == "test" and status["spool"]["next_seq"] == 3 and "uplink" in status
    uplink.stop()
    status = wait_for_status(broker.host, broker.port, "offline")
    assert status is not None and status["reason"] == "stopped"


def test_last_will_says_offline_when_the_agent_is_killed(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.edge_child", "uplink", str(tmp_path / "spool.sqlite3"), str(broker.port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_for_status(broker.host, broker.port, "online", timeout_s=15) is not None
        child.send_signal(signal.SIGKILL)
        child.wait()
        status = wait_for_status(broker.host, broker.port, "offline", timeout_s=15)
        assert status is not None and status["reason"] == "connection lost"
    finally:
        child.kill()
        child.wait()


def test_unusable_tls_files_are_retried_not_fatal(broker, spool: Spool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = UplinkConfig(host=broker.host, port=broker.port, tls=True, ca_path=tmp_path / "missing-ca.pem", **FAST)
    uplink = Uplink(config, spool, SITE, DEVICE)
    uplink.start()
    try:
        assert wait_until(lambda: uplink.stats().connect_failures >= 2, 10)
        assert uplink._thread.is_alive()
    finally:
        uplink.stop()
