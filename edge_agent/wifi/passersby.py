"""Passers-by as counts only: no pseudonym leaves the device for a phone that never came close.

The Dutch DPA wants data on passers-by deleted immediately. In this privacy
mode, sightings are held on the device for one bucket (default 5 minutes);
when the bucket closes, every cluster (physical device) that reached the
visitor band in it — or in an earlier bucket of the same key epoch, so a
visitor walking out stays one trajectory — is sent as sightings, and every
other cluster only adds to the bucket's :class:`PasserbyRow` (devices,
frames). Their pseudonyms are dropped with the bucket, in memory, never
spooled. A sighting without signal strength cannot show it was close, so it
counts as a passer-by.

The price: a visitor's street sightings from buckets before it entered are
counts, not trajectory, and counts from several sensors of a site cannot be
de-duplicated by the collector (each sensor reports its own).
"""

from __future__ import annotations

from typing import NamedTuple

from edge_agent.wifi.sightings import ClosedWindow
from shared.protocol import PasserbyRow


class EpochPassersby(NamedTuple):
    """Passer-by counts of one key epoch, ready for that epoch's batch."""

    epoch: int
    bucket_s: int
    rows: list[PasserbyRow]


class PasserbyOutput(NamedTuple):
    windows: list[ClosedWindow]
    passersby: list[EpochPassersby]


class PasserbyFilter:
    """Holds closed windows per bucket and splits them into visitors' sightings and passer-by counts."""

    def __init__(self, visitor_band_dbm: int, bucket_s: int = 300) -> None:
        if bucket_s < 1:
            raise ValueError("bucket_s must be at least 1")
        self.visitor_band_dbm = visitor_band_dbm
        self.bucket_s = bucket_s
        self._held: dict[tuple[int, int], list[ClosedWindow]] = {}
        self._visitors: dict[int, set[int]] = {}
        self._newest_start_s = float("-inf")

    def process(self, windows: list[ClosedWindow], now_s: float | None = None) -> PasserbyOutput:
        """Take closed windows; return what buckets the stream (or the wall clock ``now_s``) has left behind."""
        for window in windows:
            if not window.rows:
                continue
            start_s = window.rows[0].start_s
            self._held.setdefault((window.epoch, start_s // self.bucket_s * self.bucket_s), []).append(window)
            self._newest_start_s = max(self._newest_start_s, start_s)
        moved_on_s = self._newest_start_s if now_s is None else max(self._newest_start_s, now_s)
        return self._close([key for key in self._held if key[1] + self.bucket_s <= moved_on_s])

    def flush(self) -> PasserbyOutput:
        """Close every bucket: the agent is stopping."""
        return self._close(list(self._held))

    @property
    def held_windows(self) -> int:
        return sum(len(windows) for windows in self._held.values())

    def _close(self, keys: list[tuple[int, int]]) -> PasserbyOutput:
        visible: list[ClosedWindow] = []
        counts: dict[int, list[PasserbyRow]] = {}
        for epoch, bucket_start_s in sorted(keys):
            windows = self._held.pop((epoch, bucket_start_s))
            visitors = self._visitors_of(epoch)
            band = self.visitor_band_dbm
            visitors.update(
                row.cluster for w in windows for row in w.rows if row.rssi_max is not None and row.rssi_max >= band
            )
            passers: set[int] = set()
            passer_frames = 0
            for window in windows:
                kept = []
                for row in window.rows:
                    if row.cluster in visitors:
                        kept.append(row)
                    else:
                        passers.add(row.cluster)
                        passer_frames += row.frames
                if kept:
                    visible.append(ClosedWindow(window.epoch, window.window_s, kept))
            if passers:
                counts.setdefault(epoch, []).append(PasserbyRow(bucket_start_s, len(passers), passer_frames))
        return PasserbyOutput(visible, [EpochPassersby(e, self.bucket_s, rows) for e, rows in sorted(counts.items())])

    def _visitors_of(self, epoch: int) -> set[int]:
        """Visitor clusters of ``epoch``; older epochs' pseudonyms are forgotten with their key."""
        visitors = self._visitors.get(epoch)
        if visitors is None:
            visitors = self._visitors[epoch] = set()
            for old in [e for e in self._visitors if e < epoch - 1]:
                del self._visitors[old]
        return visitors
