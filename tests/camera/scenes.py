"""Synthetic overhead door scenes with exact truth, drawn with OpenCV.

A textured tiled floor seen from above, people as a shoulder ellipse with a
head on top, walking along straight paths at set speeds, optionally in
groups, stopping, turning back, under changing light and sensor noise. Every
walker's crossing of the counting line (its centre passing ``line_y_px``) is
known exactly, so counts can be scored one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_agent.camera.config import CameraConfig, LineConfig, PersonConfig
from edge_agent.camera.pipeline import CountingPipeline

WIDTH_PX, HEIGHT_PX, FPS = 320, 240, 25.0
LINE_Y_PX = HEIGHT_PX / 2
#: A person seen from above: shoulders this wide and deep, head this big.
SHOULDER_HALF_WIDTH_PX, SHOULDER_HALF_DEPTH_PX, HEAD_RADIUS_PX = 19, 12, 8
#: What an installer would configure for these people (calibrate measures about this).
SCENE_CAMERA = CameraConfig(
    line=LineConfig(id="door", points=[[0.0, 0.5], [1.0, 0.5]], in_side="bottom"),
    person=PersonConfig(width_frac=0.12, height_frac=0.12),
)


@dataclass
class Walker:
    """One person: a polyline path of (frame, x, y) keyframes, moving linearly between them."""

    keyframes: list[tuple[int, float, float]]
    shade: int = 40

    def position(self, frame: int) -> tuple[float, float] | None:
        first, last = self.keyframes[0], self.keyframes[-1]
        if frame < first[0] or frame > last[0]:
            return None
        for (f0, x0, y0), (f1, x1, y1) in zip(self.keyframes, self.keyframes[1:]):
            if f0 <= frame <= f1:
                share = (frame - f0) / (f1 - f0) if f1 > f0 else 0.0
                return x0 + share * (x1 - x0), y0 + share * (y1 - y0)
        return None

    def crossings(self) -> list[tuple[float, str]]:
        """(time in s, 'in' | 'out') for each time the centre passes the line and stays across it."""
        result = []
        side = None
        for frame in range(self.keyframes[0][0], self.keyframes[-1][0] + 1):
            x, y = self.position(frame)
            now = "in" if y > LINE_Y_PX else "out"
            if side is not None and now != side and self._stays(frame, now):
                result.append((frame / FPS, now))
            side = now
        return result

    def _stays(self, frame: int, side: str) -> bool:
        """Whether the walker ends on ``side`` (a turn-back on the line does not cross)."""
        _, _, y = self.keyframes[-1]
        return (y > LINE_Y_PX) == (side == "in")


def walk(x: float, start_frame: int, direction: str, speed_px_per_frame: float, shade: int = 40) -> Walker:
    """A walker crossing the whole picture top→bottom ('in') or bottom→top ('out') at column ``x``."""
    top, bottom = -SHOULDER_HALF_DEPTH_PX * 2.0, HEIGHT_PX + SHOULDER_HALF_DEPTH_PX * 2.0
    y0, y1 = (top, bottom) if direction == "in" else (bottom, top)
    frames = round(abs(y1 - y0) / speed_px_per_frame)
    return Walker([(start_frame, x, y0), (start_frame + frames, x, y1)], shade)


def turn_back(x: float, start_frame: int, from_side: str, stop_frames: int, shade: int = 40) -> Walker:
    """Walks up to the line, stands on it for ``stop_frames``, and goes back where it came from."""
    edge = HEIGHT_PX + 30.0 if from_side == "in" else -30.0
    on_line = LINE_Y_PX + (4.0 if from_side == "in" else -4.0)
    approach = round(abs(on_line - edge) / 3.0)
    return Walker(
        [
            (start_frame, x, edge),
            (start_frame + approach, x, on_line),
            (start_frame + approach + stop_frames, x, on_line),
            (start_frame + 2 * approach + stop_frames, x, edge),
        ],
        shade,
    )


@dataclass
class Scene:
    walkers: list[Walker]
    frames: int
    noise_sigma: float = 0.0
    #: (frame, gain): from that frame on the whole picture is multiplied by gain (linear ramps between).
    lighting: list[tuple[int, float]] = field(default_factory=list)
    seed: int = 7

    def truth(self) -> list[tuple[float, str]]:
        return sorted(c for walker in self.walkers for c in walker.crossings())

    def gain(self, frame: int) -> float:
        gain = 1.0
        for (f0, g0), (f1, g1) in zip([(0, 1.0), *self.lighting], self.lighting):
            if f0 <= frame < f1:
                return g0 + (g1 - g0) * (frame - f0) / max(1, f1 - f0)
            gain = g1
        return gain

    def render(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        floor = _floor(rng)
        for frame in range(self.frames):
            image = floor.copy()
            for walker in self.walkers:
                position = walker.position(frame)
                if position is not None:
                    _draw_person(image, *position, walker.shade)
            gain = self.gain(frame)
            if gain != 1.0:
                image = cv2.convertScaleAbs(image, alpha=gain)
            if self.noise_sigma:
                noise = rng.normal(0.0, self.noise_sigma, image.shape)
                image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
            yield image


def _floor(rng: np.random.Generator) -> np.ndarray:
    """Light grey tiles with grout lines and a little texture."""
    floor = np.full((HEIGHT_PX, WIDTH_PX, 3), 150, np.uint8)
    floor = np.clip(floor.astype(np.int16) + rng.integers(-6, 7, floor.shape), 0, 255).astype(np.uint8)
    for x in range(0, WIDTH_PX, 40):
        cv2.line(floor, (x, 0), (x, HEIGHT_PX), (120, 120, 125), 1)
    for y in range(0, HEIGHT_PX, 40):
        cv2.line(floor, (0, y), (WIDTH_PX, y), (120, 120, 125), 1)
    return floor


def _draw_person(image: np.ndarray, x: float, y: float, shade: int) -> None:
    centre = (round(x), round(y))
    cv2.ellipse(image, centre, (SHOULDER_HALF_WIDTH_PX, SHOULDER_HALF_DEPTH_PX), 0, 0, 360, (shade, shade, shade + 10), -1)
    cv2.circle(image, centre, HEAD_RADIUS_PX, (20, 20, 20) if shade > 90 else (200, 190, 170), -1)


@dataclass
class Score:
    truth: int
    counted: int
    matched: int

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 1.0

    @property
    def spurious(self) -> int:
        return self.counted - self.matched


def count_scene(scene: Scene, camera: CameraConfig = SCENE_CAMERA, tolerance_s: float = 0.5) -> Score:
    """Run the real counting path over the scene and match its counts to the truth one by one."""
    pipeline = CountingPipeline(camera, WIDTH_PX, HEIGHT_PX, FPS)
    rows = []
    for index, image in enumerate(scene.render()):
        rows.extend(pipeline.process(image, index / FPS))
    rows.extend(pipeline.finish())
    truth = scene.truth()
    used: set[int] = set()
    matched = 0
    for row in sorted(rows):
        for index, (t_s, direction) in enumerate(truth):
            if index not in used and direction == row.direction and abs(t_s - row.t) <= tolerance_s:
                used.add(index)
                matched += 1
                break
    return Score(len(truth), len(rows), matched)
