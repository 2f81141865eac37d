"""Finds people in a frame by background subtraction, without a GPU or a model.

OpenCV 5 has no HOG or Haar people detector, and a Pi cannot run a neural
network at frame rate, so the default detector is geometry: a background
model (MOG2 or KNN) with its shadow label thrown away, a global gain
correction and a fast relearn when the lights change, morphology to join a
body into one blob, and blob analysis that knows how big a person is. A blob
the size of two or three people (a group walking side by side) is cut into
that many people along its long axis.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import cv2
import numpy as np

from edge_agent.camera.config import BackgroundConfig

#: MOG2/KNN mark shadows 127 and foreground 255; anything above this is foreground proper.
FOREGROUND_MIN = 200
#: Share of a person's bounding box that their blob fills seen from above.
PERSON_FILL = 0.6
#: Frames of fast learning after the picture changed all at once.
RELEARN_FRAMES = 12
RELEARN_RATE = 0.25
#: Learning rate of the sample frames in :meth:`BackgroundDetector.prime`.
PRIME_RATE = 0.05
#: How quickly the gain reference learns the corrected scene (per frame).
GAIN_REFERENCE_RATE = 0.02
#: Every n-th pixel in each direction is enough to measure overall brightness.
GAIN_SAMPLE_STEP = 8
#: Gains this close to 1 are left alone (sensor noise, not a lighting change).
GAIN_DEADBAND = 0.03
#: Added before dividing so nearly black pixels do not make the gain jump.
GAIN_DARK_OFFSET = 8.0


class Detection(NamedTuple):
    """One person candidate in processing pixels: centre and size."""

    x: float
    y: float
    width_px: float
    height_px: float


class Detector(Protocol):
    def detect(self, frame: np.ndarray) -> list[Detection]: ...


class BackgroundDetector:
    """Background subtraction plus person-size-aware blob analysis."""

    def __init__(self, config: BackgroundConfig, person_width_px: float, person_height_px: float) -> None:
        self._config = config
        self.person_width_px = person_width_px
        self.person_height_px = person_height_px
        self.person_area_px = PERSON_FILL * person_width_px * person_height_px
        self._min_blob_area_px = config.min_blob_frac * self.person_area_px
        self._model = _make_model(config)
        close_px = max(3, int(min(person_width_px, person_height_px) / 4) | 1)
        self._open_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_px, close_px))
        self._gain_reference: np.ndarray | None = None
        self._relearn_left = 0
        self.relearn_count = 0
        self.foreground: np.ndarray | None = None  # the last cleaned mask, for calibrate
        self.single_blob_sizes_px: list[tuple[int, int]] = []  # (width, height) of last frame's one-person blobs

    def prime(self, frames: list[np.ndarray]) -> None:
        """Start from the median of ``frames`` as the empty scene instead of learning it live.

        The frames themselves then pass at a low learning rate so the model
        learns how much each pixel varies (sensor noise, white balance)
        without learning the people in them.
        """
        grays = [_gray(frame) for frame in frames]
        background = np.median(np.stack(grays), axis=0).astype(np.uint8)
        self._model.apply(background, learningRate=1.0)
        for gray in grays:
            self._model.apply(gray, learningRate=PRIME_RATE)
        self._gain_reference = background[::GAIN_SAMPLE_STEP, ::GAIN_SAMPLE_STEP].astype(np.float32) + GAIN_DARK_OFFSET

    def detect(self, frame: np.ndarray) -> list[Detection]:
        frame = self._correct_gain(_gray(frame))
        rate = RELEARN_RATE if self._relearn_left else -1.0
        raw = self._model.apply(frame, learningRate=rate)
        _, mask = cv2.threshold(raw, FOREGROUND_MIN, 255, cv2.THRESH_BINARY)
        if self._relearn_left:
            self._relearn_left -= 1
            self.foreground = mask
            return []
        if cv2.countNonZero(mask) > self._config.relearn_foreground_frac * mask.size:
            self._relearn_left = RELEARN_FRAMES  # the lights changed: nothing in this frame is trustworthy
            self.relearn_count += 1
            self.foreground = mask
            return []
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open_kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close_kernel)
        self.foreground = mask
        return self._blobs(mask)

    def _correct_gain(self, frame: np.ndarray) -> np.ndarray:
        """Scale the frame so the background keeps its brightness when auto-exposure or the lights shift.

        The gain is the median ratio over a sparse grid of pixels that were
        background in the previous frame, so a bright shirt filling a third
        of the picture does not darken everything else.
        """
        sample = frame[::GAIN_SAMPLE_STEP, ::GAIN_SAMPLE_STEP].astype(np.float32) + GAIN_DARK_OFFSET
        if self._gain_reference is None or self._gain_reference.shape != sample.shape:
            self._gain_reference = sample
            return frame
        background = slice(None)
        if self.foreground is not None:
            background = self.foreground[::GAIN_SAMPLE_STEP, ::GAIN_SAMPLE_STEP] == 0
            if np.count_nonzero(background) < 0.2 * background.size:
                background = slice(None)
        gain = float(np.median(self._gain_reference[background] / sample[background]))
        self._gain_reference[background] += GAIN_REFERENCE_RATE * (sample[background] * gain - self._gain_reference[background])
        if abs(gain - 1.0) < GAIN_DEADBAND:
            return frame
        return cv2.convertScaleAbs(frame, alpha=gain, beta=GAIN_DARK_OFFSET * (gain - 1.0))

    def _blobs(self, mask: np.ndarray) -> list[Detection]:
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        detections: list[Detection] = []
        self.single_blob_sizes_px = []
        for index in range(1, count):
            left, top, width, height, area = (int(v) for v in stats[index])
            if area < self._min_blob_area_px:
                continue
            people = self._people_in(width, height, area)
            if people == 1:
                self.single_blob_sizes_px.append((width, height))
                x, y = centroids[index]
                detections.append(Detection(float(x), float(y), float(width), float(height)))
                continue
            window = labels[top : top + height, left : left + width] == index
            detections.extend(self._split(window, left, top, people))
        return detections

    def _people_in(self, width_px: int, height_px: int, area_px: int) -> int:
        """How many people a blob holds, from its area, but never more than its box can fit."""
        by_area = int(area_px / self.person_area_px + 0.35)
        by_box = int(width_px / (0.75 * self.person_width_px)) * int(height_px / (0.75 * self.person_height_px))
        return max(1, min(by_area, max(by_box, 1)))

    def _split(self, window: np.ndarray, left: int, top: int, people: int) -> list[Detection]:
        """Cut a merged blob into ``people`` equal-mass slices along its long axis."""
        ys, xs = np.nonzero(window)
        xs = xs.astype(np.float32) + left
        ys = ys.astype(np.float32) + top
        mean_x, mean_y = float(xs.mean()), float(ys.mean())
        cov = np.cov(np.vstack((xs - mean_x, ys - mean_y)))
        _values, vectors = np.linalg.eigh(cov)
        axis_x, axis_y = vectors[:, -1]
        order = np.argsort((xs - mean_x) * axis_x + (ys - mean_y) * axis_y, kind="stable")
        detections = []
        for part in np.array_split(order, people):
            detections.append(
                Detection(float(xs[part].mean()), float(ys[part].mean()), self.person_width_px, self.person_height_px)
            )
        return detections


def _gray(frame: np.ndarray) -> np.ndarray:
    """Brightness only: cheaper, and blind to the white-balance swings of cheap cameras."""
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


def _make_model(config: BackgroundConfig) -> cv2.BackgroundSubtractor:
    if config.method == "knn":
        return cv2.createBackgroundSubtractorKNN(history=config.history_frames, detectShadows=True)
    return cv2.createBackgroundSubtractorMOG2(
        history=config.history_frames, varThreshold=config.var_threshold, detectShadows=True
    )
