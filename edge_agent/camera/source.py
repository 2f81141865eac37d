"""Frames from a V4L2 camera, an RTSP/HTTP stream or a video file, without ever crashing the agent.

A camera that is unplugged, a stream that stalls or a URL that does not
answer is normal in a shop. The source names its state (``connecting``,
``streaming``, ``reconnecting``, ``finished``, ``failed``, ``stopped``),
reopens a lost live camera with exponential backoff and full jitter (so a
fleet does not reconnect in lockstep after a network blip), and a stalled
read is cut short by the capture's own timeouts. A video file is finite: it
plays at its own frame rate or as fast as possible, and then the source is
``finished``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

#: Frame rate assumed when a camera or file does not say.
DEFAULT_FPS = 25.0
CONNECTING, STREAMING, RECONNECTING, FINISHED, FAILED, STOPPED = (
    "connecting", "streaming", "reconnecting", "finished", "failed", "stopped",
)  # fmt: skip


class Frame(NamedTuple):
    index: int
    t_s: float  # wall-clock time of the frame (for a file: its place in the video, anchored at open)
    image: np.ndarray


@dataclass
class SourceStatus:
    state: str = CONNECTING
    frames: int = 0
    reconnects: int = 0
    last_error: str = ""
    last_frame_monotonic: float | None = None

    def as_dict(self, stall_s: float) -> dict[str, Any]:
        state = self.state
        if state == STREAMING and self.last_frame_monotonic is not None:
            if time.monotonic() - self.last_frame_monotonic > stall_s / 2:
                state = "stalled"  # a read is blocked right now; at stall_s the timeout cuts it and reopens
        return {"state": state, "frames": self.frames, "reconnects": self.reconnects, "last_error": self.last_error}


def describe_source(spec: str) -> tuple[str, str | int]:
    """Classify a source string: ('device', 0 | '/dev/video0'), ('stream', url) or ('file', path)."""
    if spec.isdigit():
        return "device", int(spec)
    if spec.startswith("/dev/video"):
        return "device", spec
    if "://" in spec:
        return "stream", spec
    return "file", spec


class CameraSource:
    """Yields frames until the stop event is set (live) or the file ends."""

    def __init__(
        self,
        spec: str,
        stop_event: threading.Event,
        pace: str = "native",
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        stall_s: float = 5.0,
    ) -> None:
        self.kind, self._target = describe_source(spec)
        self.spec = spec
        self._stop = stop_event
        self._pace_native = pace == "native"
        self._reconnect_min_s, self._reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._stall_s = stall_s
        self.status = SourceStatus()
        self.fps = DEFAULT_FPS
        self.frame_size: tuple[int, int] | None = None  # (width, height) once known

    def status_dict(self) -> dict[str, Any]:
        return {"source": self.kind, **self.status.as_dict(self._stall_s)}

    def frames(self) -> Iterator[Frame]:
        if self.kind == "file":
            yield from self._file_frames()
        else:
            yield from self._live_frames()

    # -- files ---------------------------------------------------------------------------

    def _file_frames(self) -> Iterator[Frame]:
        path = Path(str(self._target))
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            self.status.state, self.status.last_error = FAILED, f"cannot open video file {path}"
            return
        self.fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # A file played as fast as possible would run ahead of the clock; anchor it to end about now.
        anchor_s = time.time() - (0 if self._pace_native else total / self.fps)
        started = time.monotonic()
        self.status.state = STREAMING
        index = 0
        try:
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    break
                if self._pace_native:
                    delay_s = started + index / self.fps - time.monotonic()
                    if delay_s > 0 and self._stop.wait(delay_s):
                        break
                yield self._emit(index, anchor_s + index / self.fps, image)
                index += 1
        finally:
            capture.release()
        self.status.state = STOPPED if self._stop.is_set() else FINISHED

    # -- cameras and streams ---------------------------------------------------------------

    def _live_frames(self) -> Iterator[Frame]:
        attempt = 0
        index = 0
        while not self._stop.is_set():
            capture = self._open_live()
            if capture is None:
                attempt += 1
                self._backoff(attempt)
                continue
            attempt = 0
            self.status.state = STREAMING
            try:
                while not self._stop.is_set():
                    ok, image = capture.read()
                    if not ok or image is None:
                        self.status.last_error = "the camera stopped delivering frames"
                        break
                    yield self._emit(index, time.time(), image)
                    index += 1
            finally:
                capture.release()
            if not self._stop.is_set():
                self.status.reconnects += 1
                attempt += 1
                self._backoff(attempt)
        self.status.state = STOPPED

    def _open_live(self) -> cv2.VideoCapture | None:
        self.status.state = CONNECTING if self.status.frames == 0 else RECONNECTING
        timeout_ms = int(self._stall_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        backend = cv2.CAP_V4L2 if self.kind == "device" else cv2.CAP_FFMPEG
        try:
            capture = cv2.VideoCapture(self._target, backend, params)
        except cv2.error as exc:
            self.status.last_error = f"cannot open {self.kind}: {exc.msg.strip()}"
            return None
        if not capture.isOpened():
            capture.release()
            self.status.last_error = f"cannot open {self.kind} {self.spec}"
            return None
        self.fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        if not 1.0 <= self.fps <= 240.0:
            self.fps = DEFAULT_FPS
        return capture

    def _backoff(self, attempt: int) -> None:
        """Wait before the next attempt: exponential, capped, full jitter; a stop ends the wait."""
        self.status.state = RECONNECTING
        ceiling_s = min(self._reconnect_max_s, self._reconnect_min_s * 2 ** (attempt - 1))
        self._stop.wait(random.uniform(self._reconnect_min_s, max(self._reconnect_min_s, ceiling_s)))

    def _emit(self, index: int, t_s: float, image: np.ndarray) -> Frame:
        self.status.frames += 1
        self.status.last_frame_monotonic = time.monotonic()
        if self.frame_size is None:
            self.frame_size = (image.shape[1], image.shape[0])
        return Frame(index, t_s, image)
