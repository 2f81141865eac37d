"""Draws what the counter sees onto a frame: line, band, in side, detections, tracks, counts.

Used by ``footfall-agent calibrate`` to write a PNG on the device for the
installer. The drawing happens on the processing-size frame, so the picture
shows exactly the geometry the counter uses.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_agent.camera.pipeline import CountingPipeline

LINE_COLOUR = (0, 0, 255)
BAND_COLOUR = (0, 200, 255)
DETECTION_COLOUR = (255, 160, 0)
TRACK_COLOUR = (0, 220, 0)
TEXT_COLOUR = (255, 255, 255)


def draw_overlay(pipeline: CountingPipeline, frame: np.ndarray, show_foreground: bool = True) -> np.ndarray:
    """A copy of ``frame`` (processing size) with the counter's state drawn on it (counts so far at the top)."""
    canvas = pipeline.scale(frame).copy()
    if show_foreground and pipeline.background.foreground is not None:
        tint = np.zeros_like(canvas)
        tint[:, :, 2] = pipeline.background.foreground
        canvas = cv2.addWeighted(canvas, 1.0, tint, 0.35, 0)
    _draw_line(pipeline, canvas)
    for detection in pipeline.last_detections:
        top_left = (int(detection.x - detection.width_px / 2), int(detection.y - detection.height_px / 2))
        bottom_right = (int(detection.x + detection.width_px / 2), int(detection.y + detection.height_px / 2))
        cv2.rectangle(canvas, top_left, bottom_right, DETECTION_COLOUR, 1)
    for track in pipeline.tracker.tracks:
        if not track.confirmed:
            continue
        trail = np.asarray(track.trail, dtype=np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [trail], False, TRACK_COLOUR, 1, cv2.LINE_AA)
        cv2.circle(canvas, (int(track.x), int(track.y)), 3, TRACK_COLOUR, -1)
        _text(canvas, str(track.track_id), (int(track.x) + 4, int(track.y) - 4))
    counts = pipeline.counter.counts
    _text(canvas, f"{pipeline.counter.line_id} so far: in {counts['in']}  out {counts['out']}", (6, 16))
    return canvas


def caption(canvas: np.ndarray, text: str) -> None:
    """A line of text along the bottom of the picture (e.g. the run's final counts)."""
    _text(canvas, text, (6, canvas.shape[0] - 8))


def _draw_line(pipeline: CountingPipeline, canvas: np.ndarray) -> None:
    counter = pipeline.counter
    points = counter.geometry.points_px
    half_band = counter.half_band_px
    for (ax, ay), (bx, by) in zip(points, points[1:]):
        length = math.hypot(bx - ax, by - ay)
        nx, ny = -(by - ay) / length * counter.geometry.in_sign, (bx - ax) / length * counter.geometry.in_sign
        for offset in (-half_band, half_band):
            start = (int(ax + nx * offset), int(ay + ny * offset))
            end = (int(bx + nx * offset), int(by + ny * offset))
            cv2.line(canvas, start, end, BAND_COLOUR, 1, cv2.LINE_AA)
        cv2.line(canvas, (int(ax), int(ay)), (int(bx), int(by)), LINE_COLOUR, 2, cv2.LINE_AA)
        mx, my = (ax + bx) / 2, (ay + by) / 2
        arrow_px = max(12.0, 2.5 * half_band)
        cv2.arrowedLine(canvas, (int(mx), int(my)), (int(mx + nx * arrow_px), int(my + ny * arrow_px)), LINE_COLOUR, 2)
        _text(canvas, "IN", (int(mx + nx * arrow_px) + 4, int(my + ny * arrow_px) + 4))


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, TEXT_COLOUR, 1, cv2.LINE_AA)
