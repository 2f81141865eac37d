"""The Wi-Fi processing path: frame → probe request → pseudonym → sightings → linked clusters.

This is the boundary of the capture code: raw MACs come in, and only
pseudonyms, cluster ids, fingerprint ids and aggregates come out
(:class:`ClosedWindow`). Nothing here logs or raises with a MAC in it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_agent.wifi.linker import DeviceLinker, LinkerConfig
from edge_agent.wifi.probe import ProbeRequest, SkipStats, parse_frame
from edge_agent.wifi.pseudonym import Pseudonymiser
from edge_agent.wifi.ratchet import KeyRatchet, StaleEpochError
from edge_agent.wifi.sightings import ClosedWindow, SightingAggregator

#: Fixed key for benchmarks only; never used by a running agent.
_BENCHMARK_KEY = bytes(range(32))
#: Benchmark key epoch: 2020-01-01 in daily epochs, before every capture we replay.
_BENCHMARK_EPOCH = 18_262


@dataclass
class WifiPathStats:
    frames: int = 0
    probe_requests: int = 0
    opted_out: int = 0
    stale_epoch: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class WifiPath:
    """Feeds frames through parsing, pseudonymisation, aggregation and MAC linking."""

    def __init__(self, pseudonymiser: Pseudonymiser, window_s: int = 10, linker: LinkerConfig = LinkerConfig()) -> None:
        self._pseudonymiser = pseudonymiser
        self.linker = DeviceLinker(linker)
        self._aggregator = SightingAggregator(window_s, self.linker)
        self._closed: list[ClosedWindow] = []
        self._newest_window_start_s = -1
        self.stats = WifiPathStats()
        self.skipped = SkipStats()

    @classmethod
    def for_benchmark(cls, window_s: int = 10, linker: LinkerConfig = LinkerConfig()) -> "WifiPath":
        """A path with a fixed throwaway key (state in a temp dir), for bench/ scripts.

        Every path made here shares the key, like the sensors of one key group.
        """
        state = Path(tempfile.mkdtemp(prefix="footfall-bench-")) / "pseudonym.key"
        return cls(Pseudonymiser(KeyRatchet(state, _BENCHMARK_EPOCH, 86_400, _BENCHMARK_KEY)), window_s, linker)

    def add_frame(self, timestamp_s: float, linktype: int, frame: bytes) -> None:
        self.stats.frames += 1
        probe = parse_frame(timestamp_s, linktype, frame, self.skipped)
        if probe is not None:
            self.add_probe(probe)

    def add_probe(self, probe: ProbeRequest) -> None:
        stats = self.stats
        stats.probe_requests += 1
        pseudonymiser = self._pseudonymiser
        mac = probe.source_mac
        if pseudonymiser.is_opted_out(mac):
            stats.opted_out += 1
            return
        timestamp_s = probe.timestamp_s
        epoch = pseudonymiser.epoch_for(timestamp_s)
        try:
            pseudonymiser.use_epoch(epoch)
        except StaleEpochError:
            stats.stale_epoch += 1
            return
        self._aggregator.add(
            epoch,
            timestamp_s,
            pseudonymiser.pseudonym(mac),
            probe.rssi_dbm,
            probe.channel,
            bool(mac[0] & 0x02),
            pseudonymiser.fingerprint(probe.information_elements),
            probe.sequence_number,
        )
        window_start_s = int(timestamp_s // self._aggregator.window_s)
        if window_start_s != self._newest_window_start_s:
            self._newest_window_start_s = window_start_s
            self._closed.extend(self._aggregator.close_ready())

    def flush_before(self, now_s: float) -> list[ClosedWindow]:
        """Close windows that ended before ``now_s`` and return everything closed so far."""
        self._closed.extend(self._aggregator.close_before(now_s))
        return self.drain()

    def flush_all(self) -> list[ClosedWindow]:
        self._closed.extend(self._aggregator.close_all())
        return self.drain()

    def drain(self) -> list[ClosedWindow]:
        closed, self._closed = self._closed, []
        return closed
