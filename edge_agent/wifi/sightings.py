"""Sightings: the frames of one pseudonymous device within one short window.

The edge never sends single frames. Frames are folded per (key epoch, window
start, pseudonym) into a count, max and mean RSSI, channel, randomised flag,
capability fingerprint and the first/last 802.11 sequence numbers. When a
window closes, its sightings go to the :class:`~edge_agent.wifi.linker.DeviceLinker`
in the order of their first frame, which adds the cluster id of the physical
device; the exact frame times it needs stay here and never leave the device.

A window stays open for one extra window length after the stream has moved
past it, so slightly reordered frames still land in it. A frame older than
every open window is never dropped: it opens its own window, which closes at
the next step, so frame counts always add up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from edge_agent.wifi.linker import DeviceLinker
from shared.protocol import SightingRow

# Accumulator slots (a list, mutated in place: cheaper than an object per frame).
(
    _FRAMES, _RSSI_MAX, _RSSI_SUM, _RSSI_COUNT, _CHANNEL, _RANDOMIZED, _FINGERPRINT,
    _SEQ_FIRST, _SEQ_LAST, _FIRST_SEEN_S, _LAST_SEEN_S,
) = range(11)  # fmt: skip


class ClosedWindow(NamedTuple):
    """Sightings of one window, ready for a batch of that key epoch."""

    epoch: int
    window_s: int
    rows: list[SightingRow]


class SightingAggregator:
    """Folds probe requests into per-window sightings and closes windows as time moves on."""

    def __init__(self, window_s: int = 10, linker: DeviceLinker | None = None) -> None:
        """Without a ``linker`` every MAC is its own cluster (the cluster id is its pseudonym)."""
        if window_s < 1:
            raise ValueError("window_s must be at least 1")
        self.window_s = window_s
        self.linker = linker
        self._open: dict[tuple[int, int], dict[int, list]] = {}
        self._newest_start_s = -1

    def add(
        self,
        epoch: int,
        timestamp_s: float,
        pseudonym: int,
        rssi_dbm: int | None,
        channel: int | None,
        randomized: bool,
        fingerprint: int,
        sequence_number: int | None,
    ) -> None:
        window_s = self.window_s
        start_s = int(timestamp_s // window_s) * window_s
        window = self._open.get((epoch, start_s))
        if window is None:
            window = self._open[(epoch, start_s)] = {}
            if start_s > self._newest_start_s:
                self._newest_start_s = start_s
        acc = window.get(pseudonym)
        if acc is None:
            window[pseudonym] = [
                1,
                rssi_dbm,
                rssi_dbm or 0,
                0 if rssi_dbm is None else 1,
                channel or 0,
                randomized,
                fingerprint,
                sequence_number,
                sequence_number,
                timestamp_s,
                timestamp_s,
            ]
            return
        acc[_FRAMES] += 1
        if timestamp_s > acc[_LAST_SEEN_S]:
            acc[_LAST_SEEN_S] = timestamp_s
        if rssi_dbm is not None:
            if acc[_RSSI_MAX] is None or rssi_dbm > acc[_RSSI_MAX]:
                acc[_RSSI_MAX] = rssi_dbm
            acc[_RSSI_SUM] += rssi_dbm
            acc[_RSSI_COUNT] += 1
        if sequence_number is not None:
            if acc[_SEQ_FIRST] is None:
                acc[_SEQ_FIRST] = sequence_number
            acc[_SEQ_LAST] = sequence_number

    def close_ready(self) -> list[ClosedWindow]:
        """Close windows the stream has left behind by more than one window length."""
        return self._close(lambda start_s: start_s < self._newest_start_s - self.window_s)

    def close_before(self, timestamp_s: float) -> list[ClosedWindow]:
        """Close windows that ended before ``timestamp_s`` (wall clock, for quiet periods)."""
        return self._close(lambda start_s: start_s + self.window_s <= timestamp_s)

    def close_all(self) -> list[ClosedWindow]:
        return self._close(lambda start_s: True)

    @property
    def open_windows(self) -> int:
        return len(self._open)

    def _close(self, is_due: Callable[[int], bool]) -> list[ClosedWindow]:
        due = sorted(key for key in self._open if is_due(key[1]))
        closed = []
        for epoch, start_s in due:
            window = self._open.pop((epoch, start_s))
            in_order = sorted(window.items(), key=lambda item: item[1][_FIRST_SEEN_S])
            rows = [self._row(epoch, start_s, pseudonym, acc) for pseudonym, acc in in_order]
            closed.append(ClosedWindow(epoch, self.window_s, rows))
        if self.linker is not None and closed:
            self.linker.retire_before(min((epoch for epoch, _ in self._open), default=closed[-1].epoch))
        return closed

    def _row(self, epoch: int, start_s: int, pseudonym: int, acc: list) -> SightingRow:
        rssi_mean = round(acc[_RSSI_SUM] / acc[_RSSI_COUNT], 2) if acc[_RSSI_COUNT] else None
        cluster = pseudonym
        if self.linker is not None:
            cluster = self.linker.cluster_for(
                epoch,
                pseudonym,
                acc[_FIRST_SEEN_S],
                acc[_LAST_SEEN_S],
                acc[_FINGERPRINT],
                acc[_RANDOMIZED],
                acc[_SEQ_FIRST],
                acc[_SEQ_LAST],
                rssi_mean,
            )
        return SightingRow(
            start_s,
            pseudonym,
            cluster,
            acc[_FRAMES],
            acc[_RSSI_MAX],
            rssi_mean,
            acc[_CHANNEL],
            acc[_RANDOMIZED],
            acc[_FINGERPRINT],
            acc[_SEQ_FIRST],
            acc[_SEQ_LAST],
        )
