"""One frame in, door crossings out: scale → detect → track → count.

The same object serves the agent's camera thread, ``calibrate`` and the
benchmark, so what the installer sees is what the device counts. It keeps
the last detections, tracks and foreground mask only so calibrate can draw
them; none of it leaves the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.camera.config import CameraConfig
from edge_agent.camera.count import LineCounter
from edge_agent.camera.detect import BackgroundDetector, Detection, Detector
from edge_agent.camera.onnx_detector import OnnxPersonDetector
from edge_agent.camera.track import Tracker
from shared.protocol import CrossingRow

#: A track whose last position is this share of a person's size from the border left through it.
EDGE_MARGIN_PERSONS = 0.5
#: Two tracks counting the same way within this share of a person's width (and a moment) are one person.
DUPLICATE_RADIUS_PERSONS = 0.5


@dataclass
class PipelineStats:
    frames: int = 0
    detections: int = 0
    tracks_started: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"frames": self.frames, "detections": self.detections, "tracks_started": self.tracks_started}


class CountingPipeline:
    """Counts the crossings of the configured line in a stream of frames of one size."""

    def __init__(self, config: CameraConfig, frame_width_px: int, frame_height_px: int, fps: float) -> None:
        self.frame_width_px, self.frame_height_px = frame_width_px, frame_height_px
        scale = min(1.0, config.process_width_px / frame_width_px)
        self.width_px = max(1, round(frame_width_px * scale))
        self.height_px = max(1, round(frame_height_px * scale))
        self._resize = scale < 1.0
        person_width_px = config.person.width_frac * self.width_px
        person_height_px = config.person.height_frac * self.height_px
        (x0, y0), (x1, y1) = config.line.points[0], config.line.points[-1]
        walking_axis = "y" if abs((x1 - x0) * self.width_px) >= abs((y1 - y0) * self.height_px) else "x"
        self.background = BackgroundDetector(config.background, person_width_px, person_height_px, walking_axis)
        self.detector: Detector = self.background
        if config.onnx.model_path is not None:
            self.detector = OnnxPersonDetector(config.onnx, person_width_px, person_height_px)
        max_step_px = config.tracking.max_speed_frac_per_s * self.height_px / fps + 0.25 * person_height_px
        edge_margin_px = EDGE_MARGIN_PERSONS * min(person_width_px, person_height_px)
        max_coast_frames = round(config.tracking.max_coast_s * fps)
        self.tracker = Tracker(self.width_px, self.height_px, max_step_px, max_coast_frames, edge_margin_px)
        duplicate_radius_px = DUPLICATE_RADIUS_PERSONS * person_width_px
        self.counter = LineCounter(config.line, self.width_px, self.height_px, edge_margin_px, duplicate_radius_px)
        self.stats = PipelineStats()
        self.last_detections: list[Detection] = []

    def scale(self, frame: np.ndarray) -> np.ndarray:
        if not self._resize:
            return frame
        return cv2.resize(frame, (self.width_px, self.height_px), interpolation=cv2.INTER_AREA)

    def prime(self, frames: list[np.ndarray]) -> None:
        """Learn the empty scene from a few frames at once (see BackgroundDetector.prime)."""
        self.background.prime([self.scale(frame) for frame in frames])

    def process(self, frame: np.ndarray, t_s: float) -> list[CrossingRow]:
        small = self.scale(frame)
        detections = self.detector.detect(small)
        self.last_detections = detections
        ended = self.tracker.update(detections)
        self.stats.frames += 1
        self.stats.detections += len(detections)
        crossings = [row for track in ended if (row := self.counter.end(track.track_id)) is not None]
        update = self.counter.update
        for track in self.tracker.tracks:
            if track.hits == 1 and not track.missed:
                self.stats.tracks_started += 1
            if track.missed:
                continue  # count what was seen, not what was predicted or carried along in a merge
            if (row := update(track.track_id, track.x, track.y, t_s, track.parent_id)) is not None:
                crossings.append(row)
        return crossings

    def finish(self) -> list[CrossingRow]:
        """The stream ended: tracks already past the line count (see LineCounter.end)."""
        ended = self.tracker.end_all()
        return [row for track in ended if (row := self.counter.end(track.track_id, stream_ended=True)) is not None]
