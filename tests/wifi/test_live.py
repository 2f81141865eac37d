"""Live capture up to the socket boundary: the BPF filter, the interface state machine, the kernel socket on lo."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from edge_agent.wifi.hopper import CommandResult
from edge_agent.wifi.live import (
    CaptureSocket,
    FilterError,
    InterfaceState,
    LiveSource,
    check_interface,
    compile_probe_filter,
)
from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.probe import LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP, parse_frame
from tests.realdata import require_real_data
from tests.wifi.builders import management_frame, radiotap

IFACE = "wlan9mon"
ARPHRD_ETHER, ARPHRD_IEEE80211, ARPHRD_RADIOTAP = 1, 801, 803


# --------------------------------------------------------------------------- the filter


def test_the_probe_filter_compiles_for_radiotap_and_raw_802_11():
    assert compile_probe_filter(LINKTYPE_IEEE802_11_RADIOTAP).bf_len > 0
    assert compile_probe_filter(LINKTYPE_IEEE802_11).bf_len > 0


def test_on_a_non_monitor_link_type_the_filter_error_says_why():
    with pytest.raises(FilterError, match="802.11"):
        compile_probe_filter(1)  # Ethernet: what a managed-mode interface reports


@pytest.mark.parametrize(
    ("name", "probe_requests"),
    [("aircrack_test1_mixed_radiotap.pcap", 5), ("aircrack_pmkid-not-recognized_mixed_no_radiotap.cap", 128)],
)
def test_the_compiled_filter_passes_exactly_the_probe_requests_of_real_mixed_traffic(name, probe_requests):
    """libpcap's own BPF interpreter runs the program the kernel would get over every real frame."""
    libpcap = ctypes.CDLL(ctypes.util.find_library("pcap"))
    libpcap.bpf_filter.restype = ctypes.c_uint
    passed = parsed = frames = 0
    for timestamp_s, linktype, frame in open_capture(require_real_data(f"wifi/aircrack/{name}")):
        program = compile_probe_filter(linktype)
        buffer = ctypes.create_string_buffer(frame, len(frame))
        accepted = libpcap.bpf_filter(program.bf_insns, buffer, len(frame), len(frame)) != 0
        is_probe = parse_frame(timestamp_s, linktype, frame) is not None
        assert accepted == is_probe
        passed, parsed, frames = passed + accepted, parsed + is_probe, frames + 1
    assert passed == parsed == probe_requests < frames


# --------------------------------------------------------------------------- sysfs


def make_interface(sysfs: Path, arphrd: int, up: bool, name: str = IFACE) -> None:
    directory = sysfs / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "type").write_text(f"{arphrd}\n")
    (directory / "flags").write_text("0x1003\n" if up else "0x1002\n")


def test_check_interface_reads_the_state_from_sysfs(tmp_path):
    assert check_interface(IFACE, tmp_path).state is InterfaceState.MISSING
    make_interface(tmp_path, ARPHRD_ETHER, up=True)
    check = check_interface(IFACE, tmp_path)
    assert check.state is InterfaceState.NOT_MONITOR and "Ethernet" in check.detail
    make_interface(tmp_path, ARPHRD_RADIOTAP, up=False)
    assert check_interface(IFACE, tmp_path).state is InterfaceState.DOWN
    make_interface(tmp_path, ARPHRD_RADIOTAP, up=True)
    assert check_interface(IFACE, tmp_path).linktype == LINKTYPE_IEEE802_11_RADIOTAP
    make_interface(tmp_path, ARPHRD_IEEE80211, up=True)
    assert check_interface(IFACE, tmp_path).linktype == LINKTYPE_IEEE802_11


# --------------------------------------------------------------------------- the state machine


class ReplaySocket:
    """Stands in for the kernel socket: serves recorded frames through a real socketpair, so select() works."""

    def __init__(self, linktype: int, frames: list[bytes]) -> None:
        self.linktype = linktype
        self._reader, self._writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._reader.setblocking(False)
        for frame in frames:
            self._writer.send(frame)
        self.kernel_packets = self.kernel_drops = 0
        self.closed = False

    def fileno(self) -> int:
        return self._reader.fileno()

    def receive(self) -> tuple[float, bytes] | None:
        try:
            return time.time(), self._reader.recv(65_535)
        except BlockingIOError:
            return None

    def read_kernel_statistics(self) -> None:
        self.kernel_packets += 3
        self.kernel_drops += 1

    def close(self) -> None:
        self.closed = True
        self._reader.close()
        self._writer.close()


class Opener:
    """The socket boundary: answers each open with the next outcome (an exception or a socket)."""

    def __init__(self, outcomes: list[BaseException | ReplaySocket]) -> None:
        self.outcomes = outcomes
        self.opened: list[tuple[str, int]] = []

    def __call__(self, interface: str, linktype: int) -> ReplaySocket:
        self.opened.append((interface, linktype))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def accept_every_channel(argv: list[str]) -> CommandResult:
    return CommandResult(0, "")


def live_source(sysfs: Path, opener: Opener, stop: threading.Event, **kwargs) -> LiveSource:
    return LiveSource(
        IFACE, [1, 6, 11], 0.01, stop, open_socket=opener, run=kwargs.pop("run", accept_every_channel),
        sysfs_net=sysfs, tick_s=0.005, retry_min_s=0.01, retry_max_s=0.02, recheck_s=0.01, **kwargs,
    )  # fmt: skip


class Drive(NamedTuple):
    frames: list
    fixes: dict[InterfaceState, str]  # the fix line of each state, as the status showed it


def drive(
    source: LiveSource,
    until: Callable[[], bool],
    on_state: dict[InterfaceState, Callable[[], object]],
    limit_s: float = 10.0,
) -> Drive:
    """Iterate the source, changing the world (sysfs, opener) whenever it reaches a state, until ``until()``."""
    frames = []
    fixes: dict[InterfaceState, str] = {}
    handled: set[InterfaceState] = set()
    deadline = time.monotonic() + limit_s
    for item in source:
        if item is not None:
            frames.append(item)
        fixes.setdefault(source.state, source.status().fix)
        if source.state in on_state and source.state not in handled:
            handled.add(source.state)
            on_state[source.state]()
        if until() or time.monotonic() > deadline:
            source.stop_event.set()
    return Drive(frames, fixes)


def test_every_interface_problem_is_a_state_with_one_log_line_naming_the_fix(tmp_path, caplog):
    probe = radiotap([0x0], b"") + management_frame()
    capture = ReplaySocket(LINKTYPE_IEEE802_11_RADIOTAP, [probe, probe])
    refusals = [PermissionError(errno.EPERM, "Operation not permitted"), OSError(errno.EINVAL, "Invalid argument")]
    opener = Opener([*refusals, capture])
    stop = threading.Event()
    source = live_source(tmp_path, opener, stop)
    caplog.set_level(logging.INFO, logger="footfall.agent.wifi")
    frames, _ = drive(
        source,
        until=lambda: source.frames >= 2,
        on_state={
            InterfaceState.MISSING: lambda: make_interface(tmp_path, ARPHRD_ETHER, up=True),  # plugged in, managed mode
            InterfaceState.NOT_MONITOR: lambda: make_interface(tmp_path, ARPHRD_RADIOTAP, up=False),
            InterfaceState.DOWN: lambda: make_interface(tmp_path, ARPHRD_RADIOTAP, up=True),
        },
    )
    assert source.transitions == [
        InterfaceState.MISSING,
        InterfaceState.NOT_MONITOR,
        InterfaceState.DOWN,
        InterfaceState.NO_PERMISSION,
        InterfaceState.DRIVER_REFUSED,
        InterfaceState.CAPTURING,
        InterfaceState.STOPPED,
    ]
    assert [frame for _, _, frame in frames] == [probe, probe]
    assert {linktype for _, linktype, _ in frames} == {LINKTYPE_IEEE802_11_RADIOTAP}
    assert capture.closed and opener.opened == [(IFACE, LINKTYPE_IEEE802_11_RADIOTAP)] * 3
    lines = [r.getMessage() for r in caplog.records if r.name == "footfall.agent.wifi"]
    assert len(lines) == len(source.transitions)  # retries in one state do not repeat the line
    fixes = ("plug the USB Wi-Fi adapter", "set type monitor", f"is down: run `ip link set {IFACE} up`", "CAP_NET_RAW")
    for needle in (*fixes, "EINVAL"):
        assert sum(needle in line for line in lines) == 1, needle


def test_unplug_then_replug_resumes_capture(tmp_path):
    make_interface(tmp_path, ARPHRD_RADIOTAP, up=True)
    first, second = ReplaySocket(LINKTYPE_IEEE802_11_RADIOTAP, []), ReplaySocket(LINKTYPE_IEEE802_11_RADIOTAP, [])
    stop = threading.Event()
    source = live_source(tmp_path, Opener([first, second]), stop)
    unplugged = []

    def unplug() -> None:
        unplugged.append(True)
        for path in (tmp_path / IFACE).iterdir():
            path.unlink()
        (tmp_path / IFACE).rmdir()

    drive(
        source,
        until=lambda: len(source.transitions) >= 3,
        on_state={
            InterfaceState.CAPTURING: unplug,
            InterfaceState.MISSING: lambda: make_interface(tmp_path, ARPHRD_RADIOTAP, up=True),
        },
    )
    assert source.transitions[:3] == [InterfaceState.CAPTURING, InterfaceState.MISSING, InterfaceState.CAPTURING]
    assert first.closed and unplugged


def test_status_carries_state_fix_channel_and_kernel_counters(tmp_path):
    make_interface(tmp_path, ARPHRD_RADIOTAP, up=True)
    capture = ReplaySocket(LINKTYPE_IEEE802_11_RADIOTAP, [])
    stop = threading.Event()
    source = live_source(tmp_path, Opener([capture]), stop)
    iterator = iter(source)
    deadline = time.monotonic() + 5
    while (source.status().kernel_packets == 0 or source.status().channel is None) and time.monotonic() < deadline:
        next(iterator)
    status = source.status().as_dict()
    assert status["state"] == "capturing" and status["interface"] == IFACE
    assert status["channel"] in (1, 6, 11) and status["kernel_packets"] >= 3 and status["kernel_drops"] >= 1
    stop.set()
    list(iterator)
    assert source.status().state == "stopped"


def test_when_every_channel_is_refused_the_state_says_driver_refused(tmp_path):
    make_interface(tmp_path, ARPHRD_RADIOTAP, up=True)
    stop = threading.Event()

    def refuse(argv: list[str]) -> CommandResult:
        return CommandResult(1, "command failed: Device or resource busy (-16)")

    source = live_source(tmp_path, Opener([ReplaySocket(LINKTYPE_IEEE802_11_RADIOTAP, [])]), stop, run=refuse)
    _, fixes = drive(source, until=lambda: source.state is InterfaceState.DRIVER_REFUSED, on_state={}, limit_s=5)
    assert source.transitions[:2] == [InterfaceState.CAPTURING, InterfaceState.DRIVER_REFUSED]
    assert "every channel refused" in fixes[InterfaceState.DRIVER_REFUSED]
    assert "Device or resource busy" in fixes[InterfaceState.DRIVER_REFUSED]


def test_a_long_silence_is_reported_not_hidden(tmp_path):
    make_interface(tmp_path, ARPHRD_RADIOTAP, up=True)
    stop = threading.Event()
    source = live_source(tmp_path, Opener([ReplaySocket(LINKTYPE_IEEE802_11_RADIOTAP, [])]), stop, silent_after_s=0.05)
    _, fixes = drive(source, until=lambda: source.state is InterfaceState.SILENT, on_state={}, limit_s=5)
    assert source.transitions[:2] == [InterfaceState.CAPTURING, InterfaceState.SILENT]
    assert "tcpdump -i wlan9mon" in fixes[InterfaceState.SILENT]


# --------------------------------------------------------------------------- the kernel socket


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw AF_PACKET socket needs CAP_NET_RAW")
def test_the_kernel_filter_on_a_real_socket_passes_probe_requests_and_counts_them():
    """On loopback, bytes sent with AF_PACKET arrive unchanged: radiotap frames meet the BPF as on a monitor interface."""
    capture = CaptureSocket("lo", LINKTYPE_IEEE802_11_RADIOTAP)
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sender.bind(("lo", 0))
        probe = radiotap([0x0], b"") + management_frame()
        beacon = radiotap([0x0], b"") + management_frame(fc0=0x80)
        for frame in (beacon, probe, beacon):
            sender.send(frame)
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"ordinary traffic", ("127.0.0.1", 9))
        received = []
        deadline = time.monotonic() + 2
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
            while (item := capture.receive()) is not None:
                received.append(item)
        assert received and all(frame == probe for _, frame in received)  # loopback shows it twice: out and in
        assert all(abs(timestamp_s - time.time()) < 60 for timestamp_s, _ in received)
        capture.read_kernel_statistics()
        assert capture.kernel_packets == len(received) and capture.kernel_drops == 0
    finally:
        sender.close()
        capture.close()
