"""The ``camera:`` section of ``agent.yaml``: where frames come from and where the door is.

Everything an installer may need to change on site lives here with its
default beside it and a ``help`` that the config loader prints as the fix
when a value is wrong. Geometry is normalised (0..1 of the frame width for
x, of the frame height for y) so the same file works at any resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: The image regions an installer can name as the "in" side of the counting line.
SIDE_NAMES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class LineConfig:
    id: str = field(default="door", metadata={"help": "the line's name in door_crossings.line_id, e.g. door"})
    points: list[list[float]] = field(
        default_factory=lambda: [[0.0, 0.5], [1.0, 0.5]],
        metadata={"help": "two or more [x, y] points, 0..1 of the frame width and height, e.g. [[0, 0.5], [1, 0.5]]"},
    )
    in_side: Literal["top", "bottom", "left", "right"] = field(
        default="bottom", metadata={"help": "the part of the picture that is inside the store: top, bottom, left or right"}
    )
    band_frac: float = field(
        default=0.08,
        metadata={"help": "hysteresis band around the line, fraction of the frame height (half on each side), e.g. 0.08"},
    )
    min_travel_frac: float = field(
        default=0.15,
        metadata={"help": "a person must move this far across the line to count, fraction of the frame height"},
    )

    def __post_init__(self) -> None:
        if len(self.points) < 2 or any(len(point) != 2 for point in self.points):
            raise ValueError("camera.line.points needs two or more [x, y] points")
        if any(not -0.5 <= value <= 1.5 for point in self.points for value in point):
            raise ValueError("camera.line.points are normalised: x and y should lie within 0..1 of the frame")
        if not 0 < self.band_frac < 0.5:
            raise ValueError("camera.line.band_frac must be within 0..0.5 of the frame height")
        if not 0 <= self.min_travel_frac < 1:
            raise ValueError("camera.line.min_travel_frac must be within 0..1 of the frame height")


@dataclass(frozen=True)
class PersonConfig:
    width_frac: float = field(
        default=0.15, metadata={"help": "a person's width seen from above, fraction of the frame width (calibrate measures it)"}
    )
    height_frac: float = field(
        default=0.2, metadata={"help": "a person's length seen from above, fraction of the frame height (calibrate measures it)"}
    )

    def __post_init__(self) -> None:
        if not (0 < self.width_frac <= 1 and 0 < self.height_frac <= 1):
            raise ValueError("camera.person sizes are fractions of the frame: within 0..1")


@dataclass(frozen=True)
class BackgroundConfig:
    method: Literal["mog2", "knn"] = field(default="mog2", metadata={"help": "background model: mog2 or knn"})
    history_frames: int = field(default=500, metadata={"help": "frames the background model remembers, e.g. 500"})
    var_threshold: float = field(
        default=16.0, metadata={"help": "how different a pixel must be to count as foreground; raise it if noise shows up"}
    )
    min_blob_frac: float = field(
        default=0.25, metadata={"help": "blobs smaller than this share of a person are ignored, e.g. 0.25"}
    )
    relearn_foreground_frac: float = field(
        default=0.45, metadata={"help": "when this share of the picture changes at once (lights), relearn the background"}
    )

    def __post_init__(self) -> None:
        if self.history_frames < 10:
            raise ValueError("camera.background.history_frames must be at least 10")
        if not 0 < self.relearn_foreground_frac <= 1:
            raise ValueError("camera.background.relearn_foreground_frac must be within 0..1")


@dataclass(frozen=True)
class OnnxConfig:
    model_path: Path | None = field(
        default=None, metadata={"help": "an ONNX person detector (YOLO-style output); empty = background subtraction only"}
    )
    input_px: int = field(default=320, metadata={"help": "the model's square input size in pixels, e.g. 320 or 640"})
    person_class: int = field(default=0, metadata={"help": "the class index of 'person' in the model's output"})
    min_score: float = field(default=0.4, metadata={"help": "detections below this score are ignored, 0..1"})

    def __post_init__(self) -> None:
        if self.input_px < 16:
            raise ValueError("camera.onnx.input_px must be at least 16")
        if not 0 < self.min_score < 1:
            raise ValueError("camera.onnx.min_score must be within 0..1")


@dataclass(frozen=True)
class TrackConfig:
    max_coast_s: float = field(
        default=0.5, metadata={"help": "how long a person hidden or merged with others keeps their track, in seconds"}
    )
    max_speed_frac_per_s: float = field(
        default=2.0, metadata={"help": "fastest plausible walk, in frame heights per second (gates track matching)"}
    )

    def __post_init__(self) -> None:
        if self.max_coast_s <= 0 or self.max_speed_frac_per_s <= 0:
            raise ValueError("camera.tracking values must be positive")


@dataclass(frozen=True)
class CameraConfig:
    enabled: bool = field(default=False, metadata={"help": "true to count door crossings from a camera"})
    source: str | None = field(
        default=None,
        metadata={"help": "camera: a V4L2 index (0) or device (/dev/video0), an rtsp:// or http:// URL, or a video file"},
    )
    pace: Literal["native", "max"] = field(
        default="native", metadata={"help": "video files only: native = the file's own frame rate, max = as fast as possible"}
    )
    process_width_px: int = field(
        default=320, metadata={"help": "frames are scaled to this width before detection; 320 keeps a Pi 4 near 10 fps"}
    )
    reconnect_min_s: float = field(default=1.0, metadata={"help": "first wait before reopening a lost camera"})
    reconnect_max_s: float = field(default=60.0, metadata={"help": "longest wait between reopening attempts"})
    stall_s: float = field(default=5.0, metadata={"help": "no frame for this long means the camera is stalled: reopen it"})
    line: LineConfig = field(default_factory=LineConfig)
    person: PersonConfig = field(default_factory=PersonConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    onnx: OnnxConfig = field(default_factory=OnnxConfig)
    tracking: TrackConfig = field(default_factory=TrackConfig)

    def __post_init__(self) -> None:
        if self.enabled and not self.source:
            raise ValueError("camera.source is required when camera.enabled is true (e.g. 0, /dev/video0 or rtsp://...)")
        if not 64 <= self.process_width_px <= 1920:
            raise ValueError("camera.process_width_px must be within 64..1920")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("camera.reconnect_min_s must be positive and at most reconnect_max_s")
        if self.stall_s <= 0:
            raise ValueError("camera.stall_s must be positive")
