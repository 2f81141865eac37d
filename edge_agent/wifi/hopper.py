"""Channel hopping: move the monitor interface through the configured channels.

A monitor interface hears one channel at a time. Phones scan every 2.4 GHz
channel in each scan burst, so one 2.4 GHz channel already hears every
2.4 GHz scan; hopping matters for phones that scan 5 GHz only (connected on
5 GHz, or 5 GHz-only networks saved). The hopper changes channel with
``iw dev <interface> set channel N`` every ``dwell_s`` seconds.

A channel the driver refuses (DFS, regulatory domain, a 2.4 GHz-only adapter
asked for channel 36) is set aside for ``REFUSED_RETRY_S`` and named in the
status; the others keep hopping. When the driver refuses every channel, the
hopper says so and the capture supervisor reports it. The command runner is
a parameter so the exact command sequence can be tested without hardware.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

CHANNELS_2GHZ = frozenset(range(1, 15))
CHANNELS_5GHZ = frozenset(
    [36, 40, 44, 48, 52, 56, 60, 64, 100, 104, 108, 112, 116, 120, 124, 128, 132, 136, 140, 144]
    + [149, 153, 157, 161, 165, 169, 173, 177]
)
#: How long a refused channel is left out before the hopper tries it again.
REFUSED_RETRY_S = 300.0
IW_TIMEOUT_S = 5.0


def check_channel(channel: int) -> None:
    """Raise ``ValueError`` naming the valid channels unless ``channel`` is a 2.4 or 5 GHz channel."""
    if channel not in CHANNELS_2GHZ and channel not in CHANNELS_5GHZ:
        raise ValueError(f"wifi.channels: {channel} is not a 2.4 GHz (1-14) or 20 MHz 5 GHz (36-177) channel")


class CommandResult(NamedTuple):
    returncode: int
    message: str


CommandRunner = Callable[[list[str]], CommandResult]


def run_command(argv: list[str]) -> CommandResult:
    """Run ``argv``; a missing program or a hang is a failed command, never an exception."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=IW_TIMEOUT_S, check=False)
    except FileNotFoundError:
        return CommandResult(127, f"{argv[0]} is not installed (apt-get install {argv[0]})")
    except subprocess.TimeoutExpired:
        return CommandResult(124, f"{argv[0]} did not answer within {IW_TIMEOUT_S:.0f} s")
    output = (done.stderr or done.stdout).strip().splitlines()
    return CommandResult(done.returncode, output[-1] if output else "")


@dataclass
class HopperStatus:
    channel: int | None
    hops: int
    refused: dict[int, str]


class ChannelHopper:
    """Cycles ``interface`` through ``channels``; :meth:`run` in a thread, :meth:`hop` is one step."""

    def __init__(
        self,
        interface: str,
        channels: list[int],
        dwell_s: float,
        run: CommandRunner = run_command,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for channel in channels:
            check_channel(channel)
        if not channels:
            raise ValueError("the hopper needs at least one channel")
        self.interface = interface
        self.channels = list(dict.fromkeys(channels))  # in order, without repeats
        self.dwell_s = dwell_s
        self._run = run
        self._clock = clock
        self._next = 0
        self._refused_until: dict[int, float] = {}
        self._refusals: dict[int, str] = {}
        self.channel: int | None = None
        self.hops = 0

    @property
    def hopping(self) -> bool:
        return len(self.channels) > 1

    @property
    def all_refused(self) -> bool:
        return len(self._refusals) == len(self.channels)

    def status(self) -> HopperStatus:
        return HopperStatus(self.channel, self.hops, dict(self._refusals))

    def hop(self) -> int | None:
        """Tune to the next channel the driver accepts; returns it, or ``None`` when it accepts none now."""
        now_s = self._clock()
        for _ in range(len(self.channels)):
            channel = self.channels[self._next]
            self._next = (self._next + 1) % len(self.channels)
            if self._refused_until.get(channel, 0.0) > now_s:
                continue
            result = self._run(["iw", "dev", self.interface, "set", "channel", str(channel)])
            # The refusals dict is replaced, never changed in place: the status thread copies it.
            if result.returncode == 0:
                self._refused_until.pop(channel, None)
                if channel in self._refusals:
                    self._refusals = {ch: why for ch, why in self._refusals.items() if ch != channel}
                self.channel = channel
                self.hops += 1
                return channel
            self._refused_until[channel] = now_s + REFUSED_RETRY_S
            self._refusals = {**self._refusals, channel: result.message or f"iw exited with {result.returncode}"}
        return None

    def run(self, stop: threading.Event) -> None:
        """Hop every ``dwell_s`` until ``stop``; with one channel, tune once (and retry while refused)."""
        while not stop.is_set():
            tuned = self.hop()
            if tuned is not None and not self.hopping:
                return
            stop.wait(self.dwell_s if tuned is not None else min(REFUSED_RETRY_S, 10.0))
