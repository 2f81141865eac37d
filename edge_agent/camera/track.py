"""Keeps one identity per person from frame to frame.

Counting is only as good as identities: an id switch at the line is how
rivals count one person twice. Each track predicts its next position from
its velocity (an alpha-beta filter: a Kalman filter with fixed gains, which
is all a walking person needs), detections are matched to predictions
nearest-first inside a gate that grows with the allowed walking speed, and a
track that finds no detection coasts on its prediction for a while instead
of dying, so a brief occlusion or two people merging into one blob keeps
both ids. A new track is tentative until it has been seen a few times, and
one born inside the blob another track was seen as a frame ago names that
track as its parent: the blob split, and the newcomer was where it was.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge_agent.camera.detect import Detection

#: Filter gains: how much of the surprise goes into the position and the velocity.
ALPHA, BETA = 0.7, 0.3
#: Sightings before a track is trusted; a tentative track dies at its first miss.
CONFIRM_HITS = 3
#: A coasting track slows down: a hidden person is more likely standing than sprinting.
COAST_VELOCITY_DECAY = 0.85
#: While a track's prediction lies inside another track's blob, it may coast this many times longer.
MERGED_COAST_FACTOR = 3
#: A coasting track at the frame edge, heading out, has most likely left the picture.
EDGE_COAST_FRAMES = 1
#: The gate widens by this share of a step per missed frame, for at most this many frames.
GATE_GROWTH_PER_MISS, GATE_GROWTH_MAX_MISSES = 0.5, 2
TRAIL_POINTS = 48


@dataclass
class Track:
    track_id: int
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    hits: int = 1
    missed: int = 0
    riding: bool = False  # unseen itself, but inside another track's blob and moving with it
    riding_offset: tuple[float, float] | None = None  # where in that blob, from its centre
    blob: Detection | None = None  # the detection it was last seen as
    parent_id: int | None = None  # born from a blob that split off this track's blob in the last frame
    trail: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=TRAIL_POINTS))

    @property
    def confirmed(self) -> bool:
        return self.hits >= CONFIRM_HITS

    def predicted(self) -> tuple[float, float]:
        return self.x + self.vx, self.y + self.vy


class Tracker:
    """Associates detections with tracks frame by frame."""

    def __init__(
        self,
        width_px: int,
        height_px: int,
        max_step_px: float,
        max_coast_frames: int,
        edge_margin_px: float,
        first_track_id: int = 1,
    ) -> None:
        self._width_px, self._height_px = width_px, height_px
        self._edge_margin_px = edge_margin_px
        self._max_step_px = max_step_px
        self._max_coast_frames = max(1, max_coast_frames)
        self._next_id = first_track_id
        self.tracks: list[Track] = []

    def update(self, detections: list[Detection]) -> list[Track]:
        """Advance every track by one frame; returns the tracks that ended in this frame."""
        predictions = [track.predicted() for track in self.tracks]
        last_blobs = [(track.track_id, track.blob) for track in self.tracks if track.blob and not track.missed]
        matches = self._match(predictions, detections)
        matched_detections = set(matches.values())
        ended: list[Track] = []
        alive: list[Track] = []
        for index, track in enumerate(self.tracks):
            px, py = predictions[index]
            detection_index = matches.get(index)
            if detection_index is not None:
                detection = detections[detection_index]
                rx, ry = detection.x - px, detection.y - py
                if track.hits == 1:  # the second sighting gives the first real velocity
                    track.vx, track.vy = detection.x - track.x, detection.y - track.y
                    track.x, track.y = detection.x, detection.y
                else:
                    track.x, track.y = px + ALPHA * rx, py + ALPHA * ry
                    track.vx += BETA * rx
                    track.vy += BETA * ry
                track.hits += 1
                track.missed = 0
                track.blob = detection
                track.riding, track.riding_offset = False, None
            else:
                track.missed += 1
                host = _host(px, py, detections, matched_detections) if track.confirmed else None
                track.riding = host is not None
                if host is None:
                    track.riding_offset = None
                limit = self._max_coast_frames
                if host is not None:
                    # Merged into someone else's blob: move with it, keeping their place in it, so the
                    # person keeps their id and side.
                    if not track.riding_offset:
                        track.riding_offset = (px - host.x, py - host.y)
                    track.x, track.y = host.x + track.riding_offset[0], host.y + track.riding_offset[1]
                    limit *= MERGED_COAST_FACTOR
                else:
                    track.x, track.y = px, py
                    track.vx *= COAST_VELOCITY_DECAY
                    track.vy *= COAST_VELOCITY_DECAY
                    if self._leaving(px, py, track.vx, track.vy):
                        limit = EDGE_COAST_FRAMES  # people vanish through the edge: do not wait for them
                if not track.confirmed or track.missed > limit or not self._in_frame(px, py):
                    ended.append(track)
                    continue
            track.trail.append((track.x, track.y))
            alive.append(track)
        for index, detection in enumerate(detections):
            if index not in matched_detections:
                track = Track(self._next_id, detection.x, detection.y, blob=detection)
                track.parent_id = _parent(detection, last_blobs)
                track.trail.append((detection.x, detection.y))
                self._next_id += 1
                alive.append(track)
        self.tracks = alive
        return ended

    def end_all(self) -> list[Track]:
        ended, self.tracks = self.tracks, []
        return ended

    def _match(self, predictions: list[tuple[float, float]], detections: list[Detection]) -> dict[int, int]:
        """Nearest pairs first, each track and detection used once, only within the gate."""
        if not predictions or not detections:
            return {}
        tracks_xy = np.asarray(predictions, dtype=np.float32)
        detections_xy = np.asarray([(d.x, d.y) for d in detections], dtype=np.float32)
        distances = np.linalg.norm(tracks_xy[:, None, :] - detections_xy[None, :, :], axis=2)
        gates = np.asarray([self._gate_px(track) for track in self.tracks], dtype=np.float32)
        candidates = np.argwhere(distances <= gates[:, None])
        if not len(candidates):
            return {}
        order = np.argsort(distances[candidates[:, 0], candidates[:, 1]], kind="stable")
        matches: dict[int, int] = {}
        used: set[int] = set()
        for track_index, detection_index in candidates[order].tolist():
            if track_index in matches or detection_index in used:
                continue
            matches[track_index] = detection_index
            used.add(detection_index)
        return matches

    def _gate_px(self, track: Track) -> float:
        """A coasting track is less sure where it is, so its gate widens a little while it misses."""
        return self._max_step_px * (1 + GATE_GROWTH_PER_MISS * min(track.missed, GATE_GROWTH_MAX_MISSES))

    def _in_frame(self, x: float, y: float) -> bool:
        return 0 <= x < self._width_px and 0 <= y < self._height_px

    def _leaving(self, x: float, y: float, vx: float, vy: float) -> bool:
        """Near an edge and heading out through it."""
        margin = self._edge_margin_px
        return (
            (x < margin and vx < 0)
            or (y < margin and vy < 0)
            or (x > self._width_px - margin and vx > 0)
            or (y > self._height_px - margin and vy > 0)
        )


def _parent(detection: Detection, last_blobs: list[tuple[int, Detection]]) -> int | None:
    """The track whose blob in the last frame held this new detection's centre: the blob split in two."""
    return next((track_id for track_id, blob in last_blobs if _holds(blob, detection.x, detection.y)), None)


def _host(x: float, y: float, detections: list[Detection], taken: set[int]) -> Detection | None:
    """The detection, already claimed by another track, whose box holds this point (a merge), if any."""
    return next((detections[index] for index in taken if _holds(detections[index], x, y)), None)


def _holds(blob: Detection, x: float, y: float) -> bool:
    return abs(x - blob.x) <= blob.width_px / 2 and abs(y - blob.y) <= blob.height_px / 2
