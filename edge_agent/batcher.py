"""Turns closed sighting windows, passer-by counts and door crossings into signed batches in the spool.

A batch carries one key epoch (its pseudonyms are only comparable within it),
so sightings are buffered per epoch. A batch is cut when it reaches
``max_events`` or when its oldest event has waited ``max_delay_s``: the first
bounds message size, the second bounds how stale the cloud's view may get.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.spool import Spool
from edge_agent.wifi.sightings import ClosedWindow
from shared.protocol import (
    MAX_EVENTS_PER_BLOCK,
    Batch,
    CrossingRow,
    Crossings,
    PasserbyCounts,
    PasserbyRow,
    Sightings,
    SightingRow,
    block_of_rows,
    encode_body,
    frame_message,
)
from shared.signing import DeviceSigner


@dataclass(frozen=True)
class BatchConfig:
    max_events: int = field(default=2_000, metadata={"help": f"events per batch, 1..{MAX_EVENTS_PER_BLOCK}"})
    max_delay_s: float = field(default=5.0, metadata={"help": "seconds an event may wait before its batch is sent"})

    def __post_init__(self) -> None:
        if not 1 <= self.max_events <= MAX_EVENTS_PER_BLOCK:
            raise ValueError(f"batch.max_events must be within 1..{MAX_EVENTS_PER_BLOCK}")
        if self.max_delay_s <= 0:
            raise ValueError("batch.max_delay_s must be positive")


@dataclass
class _Pending:
    """Events waiting for one key epoch's batch."""

    window_s: int = 10
    sightings: list[SightingRow] = field(default_factory=list)
    crossings: list[CrossingRow] = field(default_factory=list)
    bucket_s: int = 300
    passersby: list[PasserbyRow] = field(default_factory=list)
    since_s: float | None = None

    def __len__(self) -> int:
        return len(self.sightings) + len(self.crossings) + len(self.passersby)


class BatchAssembler:
    """Buffers events and writes them to the spool as signed batches."""

    def __init__(
        self,
        site_id: str,
        device_id: str,
        signer: DeviceSigner,
        spool: Spool,
        config: BatchConfig = BatchConfig(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._site_id = site_id
        self._device_id = device_id
        self._signer = signer
        self._spool = spool
        self._config = config
        self._clock = clock
        self._pending: dict[int, _Pending] = {}
        self._current_epoch = 0
        self.batches_written = 0

    def add_windows(self, windows: list[ClosedWindow]) -> None:
        for window in windows:
            self._current_epoch = max(self._current_epoch, window.epoch)
            pending = self._pending_for(window.epoch)
            pending.window_s = window.window_s
            for start in range(0, len(window.rows), self._config.max_events):
                pending.sightings.extend(window.rows[start : start + self._config.max_events])
                if len(pending) >= self._config.max_events:
                    self._write(window.epoch)
                    pending = self._pending_for(window.epoch)
                    pending.window_s = window.window_s

    def add_passersby(self, epoch: int, bucket_s: int, rows: list[PasserbyRow]) -> None:
        """Passer-by counts carry no pseudonym, but their bucket lies in ``epoch``: they ride with its batch."""
        self._current_epoch = max(self._current_epoch, epoch)
        for row in rows:
            pending = self._pending_for(epoch)
            if pending.passersby and pending.bucket_s != bucket_s:  # one bucket length per block
                self._write(epoch)
                pending = self._pending_for(epoch)
            pending.bucket_s = bucket_s
            pending.passersby.append(row)
            if len(pending) >= self._config.max_events:
                self._write(epoch)

    def add_crossings(self, rows: list[CrossingRow]) -> None:
        """Crossings carry no pseudonym; they ride with the current epoch's batch."""
        for row in rows:
            pending = self._pending_for(self._current_epoch)
            pending.crossings.append(row)
            if len(pending) >= self._config.max_events:
                self._write(self._current_epoch)

    def flush_due(self) -> int:
        """Write batches whose oldest event has waited long enough; returns how many."""
        deadline = self._clock() - self._config.max_delay_s
        due = [epoch for epoch, p in self._pending.items() if p.since_s is not None and p.since_s <= deadline]
        for epoch in due:
            self._write(epoch)
        return len(due)

    def flush(self) -> None:
        for epoch in sorted(self._pending):
            self._write(epoch)

    @property
    def pending_events(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def _pending_for(self, epoch: int) -> _Pending:
        pending = self._pending.get(epoch)
        if pending is None:
            pending = self._pending[epoch] = _Pending(since_s=self._clock())
        return pending

    def _write(self, epoch: int) -> None:
        pending = self._pending.pop(epoch, None)
        if pending is None or not len(pending):
            return

        def make_message(seq: int, spool_floor: int) -> bytes:
            batch = Batch(
                site_id=self._site_id,
                device_id=self._device_id,
                seq=seq,
                created_at_s=self._clock(),
                key_epoch=epoch,
                spool_floor=spool_floor,
                sightings=block_of_rows(Sightings, pending.sightings, window_s=pending.window_s),
                crossings=block_of_rows(Crossings, pending.crossings),
                passersby=block_of_rows(PasserbyCounts, pending.passersby, bucket_s=pending.bucket_s),
            )
            body = encode_body(batch)
            return frame_message(body, self._signer.sign(body))

        self._spool.append(make_message, events=len(pending))
        self.batches_written += 1
