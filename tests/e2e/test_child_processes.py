"""The collector's child processes live and die with it: analytics (collector/analytics/worker.py) and checkers."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from shared.devstack.system import CollectorProcess, LocalSystem


def child_pids(parent_pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``parent_pid``."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            if int(fields["PPid"]) == parent_pid and not fields["State"].startswith("Z"):
                children.add(int(entry.name))
    return children


def is_running(pid: int) -> bool:
    try:
        return "State:\tZ" not in (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def started_collector(system: LocalSystem) -> tuple[CollectorProcess, int]:
    """A ready collector and the pid its analytics process logged (its records go through the collector's log)."""
    collector = system.start_collector()
    collector.wait_ready()
    wait_for(lambda: "analytics=started pid=" in collector.log_tail(), 30, collector.log_tail())
    match = re.search(r"analytics=started pid=(\d+)", collector.log_tail())
    assert match is not None and collector.process is not None
    analytics_pid = int(match.group(1))
    assert analytics_pid in child_pids(collector.process.pid)
    return collector, analytics_pid


def test_a_sigkilled_collector_leaves_no_child_process_behind(system: LocalSystem) -> None:
    collector, _ = started_collector(system)
    assert collector.process is not None
    children = child_pids(collector.process.pid)
    assert len(children) >= 3  # analytics, a checker, multiprocessing's resource tracker

    collector.kill()

    wait_for(lambda: not any(map(is_running, children)), 15, "a child process outlived its SIGKILLed collector")


def test_a_collector_whose_analytics_process_dies_exits_1_and_says_so(system: LocalSystem) -> None:
    collector, analytics_pid = started_collector(system)
    assert collector.process is not None

    os.kill(analytics_pid, signal.SIGKILL)

    assert collector.process.wait(30) == 1
    assert "task=collector-analytics exited code=-9" in collector.log_tail()


def test_a_stopped_collector_stops_its_child_processes_and_exits_0(system: LocalSystem) -> None:
    collector, _ = started_collector(system)
    assert collector.process is not None
    children = child_pids(collector.process.pid)

    assert collector.stop() == 0
    wait_for(lambda: not any(map(is_running, children)), 5, "a child process outlived its stopped collector")
    assert "level=ERROR" not in collector.log_tail(200)
