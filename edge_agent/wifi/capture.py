"""Replay a capture file as if it were a live monitor interface.

``footfall-agent replay`` and the tests feed recorded captures through the
same path as live traffic. Pacing is anchored at the first packet (each packet
is due at ``anchor + capture_elapsed / speed`` on the monotonic clock), so
sleep overshoot never accumulates into drift. Real captures are not always
monotonic — merged sniffers step back by fractions of a second, and a clock
jump can move time by hours — so any step between consecutive packets longer
than ``max_wait_s`` of wall time, forwards or backwards, re-anchors the
schedule after waiting at most ``max_wait_s``. Yielded timestamps are always
the capture's own.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

from edge_agent.wifi.pcap import CaptureReader, open_capture

DEFAULT_MAX_WAIT_S = 5.0


class ReplaySource:
    """Iterate ``(timestamp_s, linktype, frame)`` from a capture file at a chosen pace.

    ``speed=1.0`` replays in real time, ``speed=N`` N times faster, ``None`` as
    fast as possible. Setting ``stop_event`` (or calling :meth:`stop`) ends the
    iteration promptly, even in the middle of a wait. ``capture`` exposes the
    reader's counters (packets, truncated_records, malformed_records).
    """

    def __init__(
        self,
        path: str | Path,
        speed: float | None = 1.0,
        stop_event: threading.Event | None = None,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive or None, got {speed!r}")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s!r}")
        self.speed = speed
        self.max_wait_s = max_wait_s
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.capture: CaptureReader = open_capture(path)

    def stop(self) -> None:
        """Ask a running iteration to end; safe from any thread."""
        self.stop_event.set()

    def close(self) -> None:
        self.capture.close()

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[float, int, bytes]]:
        return self._unpaced() if self.speed is None else self._paced(self.speed)

    def _unpaced(self) -> Iterator[tuple[float, int, bytes]]:
        is_stopped = self.stop_event.is_set
        for packet in self.capture:
            if is_stopped():
                return
            yield packet

    def _paced(self, speed: float) -> Iterator[tuple[float, int, bytes]]:
        is_stopped = self.stop_event.is_set
        wait_for_stop = self.stop_event.wait
        max_jump_s = self.max_wait_s * speed  # the longest capture-time step replayed faithfully
        previous_capture_s: float | None = None
        anchor_wall_s = anchor_capture_s = previous_due_s = 0.0
        for packet in self.capture:
            timestamp_s = packet[0]
            if previous_capture_s is None:
                anchor_wall_s, anchor_capture_s = time.monotonic(), timestamp_s
            elif abs(timestamp_s - previous_capture_s) > max_jump_s:
                forward_wait_s = self.max_wait_s if timestamp_s > previous_capture_s else 0.0
                anchor_wall_s, anchor_capture_s = previous_due_s + forward_wait_s, timestamp_s
            due_s = anchor_wall_s + (timestamp_s - anchor_capture_s) / speed
            wait_s = due_s - time.monotonic()
            if wait_s > 0:
                if wait_for_stop(wait_s):
                    return
            elif is_stopped():
                return
            previous_capture_s, previous_due_s = timestamp_s, due_s
            yield packet
