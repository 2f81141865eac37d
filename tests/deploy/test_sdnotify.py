"""sd_notify messages and the watchdog feeder, against a real datagram socket."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.sdnotify import SystemdNotifier, watchdog_interval_s
from shared.watchdog import Heartbeat, WatchdogFeeder
from tests.deploy.notify_socket import NotifySocket


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()


def test_messages_reach_the_socket(notify: NotifySocket) -> None:
    notifier = SystemdNotifier(str(notify.path))
    notifier.ready("up")
    notifier.watchdog()
    notifier.stopping("draining")
    assert notify.drain(1.0) == [
        {"READY": "1", "STATUS": "up"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1", "STATUS": "draining"},
    ]


def test_abstract_socket_names_work() -> None:
    name = f"footfall-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        SystemdNotifier("@" + name).status("hello")
        assert server.recv(100) == b"STATUS=hello"


def test_without_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not SystemdNotifier.from_environment({}).enabled
    SystemdNotifier.from_environment({}).ready("x")
    SystemdNotifier(str(tmp_path / "nobody-listens")).ready("x")  # logged once, never raised


def test_watchdog_interval_is_only_for_the_named_process() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000"}) == 3.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 3.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({}) is None


def test_feeder_feeds_only_while_every_heartbeat_is_on_time(notify: NotifySocket) -> None:
    loop = Heartbeat()
    feeder = WatchdogFeeder(
        SystemdNotifier(str(notify.path), watchdog_interval_s=3.0),
        lambda: [f"loop late by {loop.late_by_s():.0f} s"] if loop.late_by_s() else [],
        lambda: "all good",
    )
    assert feeder.interval_s == 1.0
    assert feeder.feed_once() == []
    assert notify.drain(0.5) == [{"WATCHDOG": "1"}, {"STATUS": "all good"}]

    loop.beat(-5)  # the loop promised a beat five seconds ago
    assert feeder.feed_once() == ["loop late by 5 s"]
    assert notify.drain(0.5) == [{"STATUS": "unhealthy: loop late by 5 s"}]

    loop.beat(60)
    assert feeder.feed_once() == []
    assert {"WATCHDOG": "1"} in notify.drain(0.5)


def test_a_check_that_raises_is_unhealthy(notify: NotifySocket) -> None:
    feeder = WatchdogFeeder(SystemdNotifier(str(notify.path)), lambda: 1 / 0, lambda: "")  # type: ignore[arg-type,return-value]
    assert feeder.feed_once() == ["health check failed: ZeroDivisionError"]
    assert notify.drain(0.5) == [{"STATUS": "unhealthy: health check failed: ZeroDivisionError"}]
