"""Live capture from a monitor-mode interface, supervised so the agent never dies or goes quiet silently.

What peers' users hate: "Failed to compile filter expression" because the
interface is not in monitor mode, and silent nothing when the driver lacks
monitor mode. So before opening anything the supervisor reads the interface
from sysfs and names the state it is in, as an explicit state machine:

    missing ─┐
    down ────┤  (probe again with backoff: 1 s, 2 s, … 60 s)
    not_monitor_mode ─┤
    no_permission ────┤
    driver_refused ───┴──▶ capturing ◀──▶ silent (no probe request for a long time)

Every change of state is logged once, as one plain-language line that
names the fix; the state, the fix, the channel and the kernel's packet and
drop counters (``PACKET_STATISTICS``) are in the agent's status. The agent
keeps running in every state.

Capture is a scapy ``L2ListenSocket`` (raw ``AF_PACKET``) with a kernel BPF
filter compiled for the interface's link type (radiotap or raw 802.11) that
passes probe requests only, so the kernel drops everything else before
Python sees it. Frames are read without dissection — scapy's dissector
manages ~800 frames/s, our parser over 100,000.
"""

from __future__ import annotations

import enum
import errno
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.wifi.hopper import ChannelHopper, CommandRunner, run_command
from edge_agent.wifi.probe import LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP

log = logging.getLogger("footfall.agent.wifi")

#: libpcap filter: 802.11 management frames of subtype probe request.
PROBE_REQUEST_FILTER = "type mgt subtype probe-req"
SYSFS_NET = Path("/sys/class/net")
#: ARPHRD (``/sys/class/net/<if>/type``) → pcap link type, for the monitor-mode types we parse.
LINKTYPE_BY_ARPHRD = {803: LINKTYPE_IEEE802_11_RADIOTAP, 801: LINKTYPE_IEEE802_11}
ARPHRD_NAMES = {1: "Ethernet / managed Wi-Fi", 772: "loopback", 802: "monitor mode with Prism headers"}
IFF_UP = 0x1
SOL_PACKET = 263
PACKET_STATISTICS = 6
SNAPLEN = 65_535
Frame = tuple[float, int, bytes]


class FilterError(Exception):
    """The probe-request filter cannot be compiled for this link type."""


def compile_probe_filter(linktype: int) -> Any:
    """The BPF program (a scapy ``bpf_program``) passing probe requests for ``linktype``."""
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        return compile_filter(PROBE_REQUEST_FILTER, linktype=linktype)
    except (Scapy_Exception, ImportError) as exc:
        raise FilterError(f"the probe-request filter does not compile for link type {linktype}: {exc}") from None


class InterfaceState(enum.Enum):
    STARTING = "starting"
    MISSING = "missing"
    DOWN = "down"
    NOT_MONITOR = "not_monitor_mode"
    NO_PERMISSION = "no_permission"
    DRIVER_REFUSED = "driver_refused"
    CAPTURING = "capturing"
    SILENT = "silent"
    STOPPED = "stopped"


#: One plain-language line per state: what is wrong and what to do. ``{interface}`` and ``{detail}`` are filled in.
FIXES: dict[InterfaceState, str] = {
    InterfaceState.STARTING: "",
    InterfaceState.MISSING: (
        "Wi-Fi interface {interface} does not exist: plug the USB Wi-Fi adapter in, or set wifi.interface "
        "to one listed by `ip link`"
    ),
    InterfaceState.DOWN: "Wi-Fi interface {interface} is down: run `ip link set {interface} up`",
    InterfaceState.NOT_MONITOR: (
        "Wi-Fi interface {interface} is not in monitor mode ({detail}): run `ip link set {interface} down; "
        "iw dev {interface} set type monitor; ip link set {interface} up`, or use an adapter whose driver "
        "supports monitor mode"
    ),
    InterfaceState.NO_PERMISSION: (
        "no permission to capture on {interface} ({detail}): run the agent with CAP_NET_RAW and CAP_NET_ADMIN "
        "(the footfall-agent systemd unit grants both)"
    ),
    InterfaceState.DRIVER_REFUSED: (
        "the driver of {interface} refused ({detail}): check `iw list` for monitor mode and the channels in "
        "wifi.channels, or use an adapter whose driver supports monitor mode"
    ),
    InterfaceState.CAPTURING: "capturing probe requests on {interface}",
    InterfaceState.SILENT: (
        "{interface} is in monitor mode but no probe request has arrived for {detail}: normal if nobody is "
        "near; if it persists while people are around, the driver may not deliver monitor frames — check "
        "with `tcpdump -i {interface} -c 5`"
    ),
    InterfaceState.STOPPED: "capture stopped",
}
#: States worth a warning in the log (the others are info).
PROBLEM_STATES = frozenset(
    {
        InterfaceState.MISSING,
        InterfaceState.DOWN,
        InterfaceState.NOT_MONITOR,
        InterfaceState.NO_PERMISSION,
        InterfaceState.DRIVER_REFUSED,
        InterfaceState.SILENT,
    }
)


@dataclass(frozen=True)
class InterfaceCheck:
    """What sysfs says about the interface: a state, a detail for the fix line, and the link type if usable."""

    state: InterfaceState
    detail: str = ""
    linktype: int | None = None


def check_interface(interface: str, sysfs_net: Path = SYSFS_NET) -> InterfaceCheck:
    """Read ``/sys/class/net/<interface>/{type,flags}``; ``CAPTURING`` means ready to open."""
    directory = sysfs_net / interface
    try:
        arphrd = int((directory / "type").read_text().strip())
        flags = int((directory / "flags").read_text().strip(), 16)
    except FileNotFoundError:
        return InterfaceCheck(InterfaceState.MISSING)
    except (OSError, ValueError) as exc:
        return InterfaceCheck(InterfaceState.DRIVER_REFUSED, f"sysfs unreadable: {exc}")
    linktype = LINKTYPE_BY_ARPHRD.get(arphrd)
    if linktype is None:
        return InterfaceCheck(InterfaceState.NOT_MONITOR, f"its link type is {ARPHRD_NAMES.get(arphrd, arphrd)}")
    if not flags & IFF_UP:
        return InterfaceCheck(InterfaceState.DOWN)
    return InterfaceCheck(InterfaceState.CAPTURING, linktype=linktype)


class CaptureSocket:
    """A scapy listen socket on one interface with the probe-request BPF attached; frames as bytes."""

    def __init__(self, interface: str, linktype: int) -> None:
        from scapy.arch.linux import SO_ATTACH_FILTER, L2ListenSocket, sock_fprog

        program = compile_probe_filter(linktype)
        self.linktype = linktype
        self._socket = L2ListenSocket(iface=interface, nofilter=1)
        try:
            program_struct = sock_fprog(program.bf_len, program.bf_insns)
            self._socket.ins.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program_struct)
            self._socket.ins.setblocking(False)
            self._discard_unfiltered()
        except OSError:
            self._socket.close()
            raise
        self.kernel_packets = 0
        self.kernel_drops = 0

    def _discard_unfiltered(self) -> None:
        """Drop what was queued before the filter was attached, and reset the kernel counters.

        scapy binds the socket before we can attach the BPF, so anything that
        arrived in between passed no filter; it must neither reach the parser
        nor count as captured.
        """
        while True:
            try:
                self._socket.ins.recv(SNAPLEN)
            except BlockingIOError:
                break
        self._socket.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)

    def fileno(self) -> int:
        return self._socket.ins.fileno()

    def receive(self) -> tuple[float, bytes] | None:
        """One frame and its kernel timestamp, or ``None`` when nothing is waiting."""
        try:
            _layer, frame, timestamp_s = self._socket.recv_raw(SNAPLEN)
        except BlockingIOError:
            return None
        if frame is None:
            return None
        return (timestamp_s if timestamp_s is not None else time.time()), frame

    def read_kernel_statistics(self) -> None:
        """Add the kernel's counters since the last read (reading resets them) to the totals."""
        packets, drops = struct.unpack("II", self._socket.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.kernel_packets += packets
        self.kernel_drops += drops

    def close(self) -> None:
        self._socket.close()


SocketOpener = Callable[[str, int], CaptureSocket]


@dataclass
class CaptureStatus:
    """The capture's part of the agent status: no MACs, counters and the fix only."""

    interface: str
    state: str
    fix: str
    channel: int | None
    hops: int
    refused_channels: dict[int, str]
    kernel_packets: int
    kernel_drops: int
    frames: int

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "refused_channels": {str(k): v for k, v in self.refused_channels.items()}}


class LiveSource:
    """Iterate ``(timestamp_s, linktype, frame)`` from a monitor interface, or ``None`` ticks while idle.

    The ticks (every ``tick_s``) let the agent close sighting windows and
    send batches while no frame arrives — and while the interface is away.
    """

    def __init__(
        self,
        interface: str,
        channels: list[int],
        dwell_s: float,
        stop_event: threading.Event,
        *,
        open_socket: SocketOpener = CaptureSocket,
        run: CommandRunner = run_command,
        sysfs_net: Path = SYSFS_NET,
        tick_s: float = 0.25,
        retry_min_s: float = 1.0,
        retry_max_s: float = 60.0,
        recheck_s: float = 5.0,
        silent_after_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interface = interface
        self.stop_event = stop_event
        self.hopper = ChannelHopper(interface, channels, dwell_s, run)
        self._open_socket = open_socket
        self._sysfs_net = sysfs_net
        self._tick_s = tick_s
        self._retry_min_s, self._retry_max_s = retry_min_s, retry_max_s
        self._recheck_s = recheck_s
        self._silent_after_s = silent_after_s
        self._clock = clock
        self.state = InterfaceState.STARTING
        self.detail = ""
        self.frames = 0
        self._kernel_packets = self._kernel_drops = 0
        self.transitions: list[InterfaceState] = []

    def status(self) -> CaptureStatus:
        hopper = self.hopper.status()
        return CaptureStatus(
            self.interface,
            self.state.value,
            self.fix(),
            hopper.channel,
            hopper.hops,
            hopper.refused,
            self._kernel_packets,
            self._kernel_drops,
            self.frames,
        )

    def fix(self) -> str:
        return FIXES[self.state].format(interface=self.interface, detail=self.detail)

    def __iter__(self) -> Iterator[Frame | None]:
        retry_s = self._retry_min_s
        while not self.stop_event.is_set():
            capture = self._open()
            if capture is None:
                yield from self._idle(retry_s)
                retry_s = min(self._retry_max_s, retry_s * 2)
                continue
            retry_s = self._retry_min_s
            hopper_stop = threading.Event()
            hopper = threading.Thread(target=self.hopper.run, args=(hopper_stop,), name="footfall-hopper", daemon=True)
            hopper.start()
            try:
                yield from self._capture(capture)
            finally:
                hopper_stop.set()
                hopper.join(5.0)
                self._add_kernel_statistics(capture)
                capture.close()
        self._enter(InterfaceState.STOPPED)

    def _open(self) -> CaptureSocket | None:
        check = check_interface(self.interface, self._sysfs_net)
        if check.linktype is None:
            self._enter(check.state, check.detail)
            return None
        try:
            capture = self._open_socket(self.interface, check.linktype)
        except PermissionError as exc:
            self._enter(InterfaceState.NO_PERMISSION, exc.strerror or type(exc).__name__)
            return None
        except (OSError, FilterError, ValueError) as exc:
            self._enter(InterfaceState.DRIVER_REFUSED, _describe(exc))
            return None
        self._enter(InterfaceState.CAPTURING)
        return capture

    def _idle(self, wait_s: float) -> Iterator[None]:
        """Wait before the next attempt, ticking so the agent keeps pumping."""
        deadline_s = self._clock() + wait_s
        while not self.stop_event.is_set() and self._clock() < deadline_s:
            self.stop_event.wait(min(self._tick_s, max(0.0, deadline_s - self._clock())))
            yield None

    def _capture(self, capture: CaptureSocket) -> Iterator[Frame | None]:
        linktype = capture.linktype
        last_frame_s = next_check_s = self._clock()
        while not self.stop_event.is_set():
            readable, _, _ = select.select([capture], [], [], self._tick_s)
            if readable:
                try:
                    while (received := capture.receive()) is not None:
                        self.frames += 1
                        yield received[0], linktype, received[1]
                except OSError as exc:
                    self._enter(*_state_of_error(exc))
                    return
                last_frame_s = self._clock()
                if self.state is InterfaceState.SILENT:
                    self._enter(InterfaceState.CAPTURING)
            yield None
            now_s = self._clock()
            if now_s < next_check_s:
                continue
            next_check_s = now_s + self._recheck_s
            self._add_kernel_statistics(capture)
            check = check_interface(self.interface, self._sysfs_net)
            if check.linktype != linktype:  # unplugged, taken down or switched out of monitor mode
                self._enter(check.state if check.linktype is None else InterfaceState.DRIVER_REFUSED, check.detail)
                return
            if self.hopper.all_refused:
                refused = ", ".join(f"{ch}: {why}" for ch, why in self.hopper.status().refused.items())
                self._enter(InterfaceState.DRIVER_REFUSED, f"every channel refused — {refused}")
            elif now_s - last_frame_s >= self._silent_after_s:
                self._enter(InterfaceState.SILENT, f"{now_s - last_frame_s:.0f} s")
            elif self.state is not InterfaceState.CAPTURING:
                self._enter(InterfaceState.CAPTURING)

    def _add_kernel_statistics(self, capture: CaptureSocket) -> None:
        try:
            capture.read_kernel_statistics()
        except OSError:
            return
        self._kernel_packets, self._kernel_drops = capture.kernel_packets, capture.kernel_drops

    def _enter(self, state: InterfaceState, detail: str = "") -> None:
        """Change state; log one line naming the fix, only when the state changes."""
        if state is self.state:
            self.detail = detail or self.detail
            return
        self.state, self.detail = state, detail
        self.transitions.append(state)
        level = logging.WARNING if state in PROBLEM_STATES else logging.INFO
        log.log(level, "wifi capture %s: %s", state.value, self.fix())


def _state_of_error(exc: OSError) -> tuple[InterfaceState, str]:
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return InterfaceState.MISSING, ""
    if exc.errno == errno.ENETDOWN:
        return InterfaceState.DOWN, ""
    return InterfaceState.DRIVER_REFUSED, _describe(exc)


def _describe(exc: BaseException) -> str:
    """A short reason without frame bytes: OS errors by name, others by message."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return str(exc)[:200]
