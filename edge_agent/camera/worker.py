"""The camera path on its own thread, handing crossings to the agent through a queue.

The batcher is owned by the agent's main loop and is not thread-safe. Rather
than lock it, the camera thread only ever puts finished ``CrossingRow``s on a
``queue.SimpleQueue`` (thread-safe, never blocks) and the main loop drains it
whenever it pumps the batcher. So the batcher keeps one writer, and a slow
camera never holds up Wi-Fi capture or the other way round.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from edge_agent.camera.config import CameraConfig
from edge_agent.camera.pipeline import CountingPipeline
from edge_agent.camera.source import FAILED, CameraSource, Frame
from shared.protocol import CrossingRow

log = logging.getLogger("footfall.agent.camera")


class CameraWorker:
    """Runs source → counting pipeline until the stop event is set or a video file ends."""

    def __init__(self, config: CameraConfig) -> None:
        assert config.source is not None
        self._config = config
        self._stop_event = threading.Event()
        self.source = CameraSource(
            config.source,
            self._stop_event,
            pace=config.pace,
            reconnect_min_s=config.reconnect_min_s,
            reconnect_max_s=config.reconnect_max_s,
            stall_s=config.stall_s,
        )
        self._rows: queue.SimpleQueue[CrossingRow] = queue.SimpleQueue()
        self._pipeline: CountingPipeline | None = None
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._started_monotonic: float | None = None
        self.crossings = {"in": 0, "out": 0}

    def start(self) -> None:
        self._started_monotonic = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop_event.set()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def drain(self) -> list[CrossingRow]:
        """Everything counted since the last call (called by the thread that owns the batcher)."""
        rows = []
        while True:
            try:
                rows.append(self._rows.get_nowait())
            except queue.Empty:
                return rows

    def status(self) -> dict[str, Any]:
        """Counters for the retained status message: states and numbers only, never pixels."""
        elapsed_s = time.monotonic() - self._started_monotonic if self._started_monotonic else 0.0
        frames = self.source.status.frames
        return {
            **self.source.status_dict(),
            "fps": round(frames / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            "crossings_in": self.crossings["in"],
            "crossings_out": self.crossings["out"],
        }

    def _run(self) -> None:
        try:
            for frame in self.source.frames():
                self._process(frame)
            if self._pipeline is not None:
                self._put(self._pipeline.finish())
        except Exception as exc:  # the camera must never take the agent down
            log.exception("camera path failed; the agent goes on without it")
            self.source.status.state = FAILED
            self.source.status.last_error = f"{type(exc).__name__}: {exc}"[:200]
        log.info("camera stopped state=%s frames=%d in=%d out=%d", self.source.status.state,
                 self.source.status.frames, self.crossings["in"], self.crossings["out"])  # fmt: skip

    def _process(self, frame: Frame) -> None:
        height_px, width_px = frame.image.shape[:2]
        pipeline = self._pipeline
        if pipeline is None or (pipeline.frame_width_px, pipeline.frame_height_px) != (width_px, height_px):
            if pipeline is not None:
                self._put(pipeline.finish())
            log.info("camera streaming %dx%d at %.1f fps from %s", width_px, height_px, self.source.fps, self.source.kind)
            pipeline = self._pipeline = CountingPipeline(self._config, width_px, height_px, self.source.fps)
        self._put(pipeline.process(frame.image, frame.t_s))

    def _put(self, rows: list[CrossingRow]) -> None:
        for row in rows:
            self.crossings[row.direction] += 1
            self._rows.put(row)
