"""Turns track positions into door crossings: one line, a named in side, hysteresis.

Rival counters double count when a box jitters on the line or a track is
handed to a new id, and never count lines near the frame edge. Here a track
must be seen clearly on one side (outside the hysteresis band; a track first
seen inside the band comes from the side of the blob it split off, else from
the side it is on unless it is right on the line), then clearly on the other
for a moment (a blob that jumps across and back when two people merge and
part is not a crossing), having moved at least ``min_travel_px`` across;
each track counts at most once per direction; and a track that disappears
through the frame edge just after the line counts even though the band is
cut off by the edge. One person whose blob broke into two tracks (motion
blur, a bag, an arm) would still count twice, so a count by a freshly born
track in the same direction, at the same place and moment as another count,
is dropped, and a track that took its side from the blob it split off counts
once with that blob's track. Positions beyond the ends of a line that stops
short of the frame forget the side, so walking around the end of a line is
not a crossing.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from edge_agent.camera.config import LineConfig
from shared.protocol import CrossingRow

#: Far-away reference points (normalised) that name each side of the picture.
_SIDE_REFERENCE = {"top": (0.0, -1.0), "bottom": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}


#: A track must stay across the band this long before it counts ("crosses and stays there").
STAY_S = 0.2
#: Two same-direction counts this close in time (and place) are one person split in two ...
DUPLICATE_WINDOW_S = 0.35
#: ... when the second track is a fragment born moments ago; two long-lived tracks are two people.
YOUNG_TRACK_S = 1.0
#: A track that took its side from the blob it split off, and that blob's track, counting the same
#: way this close in time are one person (a fragment leads or trails its body by a step or so).
SPLIT_WINDOW_S = 1.0
#: Where nothing clearer can be had (a track leaving at the frame edge, or first seen inside the
#: band), a position this share of the half band past the line is trusted to be on that side.
SIDE_MIN_BAND_SHARE = 0.25


class LineGeometry:
    """A polyline in processing pixels whose signed distance is positive on the in side."""

    def __init__(self, config: LineConfig, width_px: int, height_px: int) -> None:
        self.points_px = [(x * width_px, y * height_px) for x, y in config.points]
        self._segments = [
            (ax, ay, bx - ax, by - ay, (bx - ax) ** 2 + (by - ay) ** 2)
            for (ax, ay), (bx, by) in zip(self.points_px, self.points_px[1:])
        ]
        if any(length_sq == 0 for *_rest, length_sq in self._segments):
            raise ValueError("camera.line.points has two equal points in a row")
        (x0, y0), (x1, y1) = self.points_px[0], self.points_px[-1]
        chord_x, chord_y = x1 - x0, y1 - y0
        ref_x, ref_y = _SIDE_REFERENCE[config.in_side]
        cross = chord_x * ref_y - chord_y * ref_x
        if abs(cross) < 0.2 * math.hypot(chord_x, chord_y):
            raise ValueError(
                f"camera.line.in_side {config.in_side!r} runs along the line; name a side the line separates"
            )
        self.in_sign = 1.0 if cross > 0 else -1.0

    def signed_distance(self, x: float, y: float) -> tuple[float, bool]:
        """(distance to the line, positive on the in side; whether the point lies beside the line, not beyond its ends)."""
        best_sq, best_cross, beside = math.inf, 0.0, True
        last = len(self._segments) - 1
        for index, (ax, ay, dx, dy, length_sq) in enumerate(self._segments):
            t = ((x - ax) * dx + (y - ay) * dy) / length_sq
            clamped = min(1.0, max(0.0, t))
            px, py = ax + clamped * dx - x, ay + clamped * dy - y
            distance_sq = px * px + py * py
            if distance_sq < best_sq:
                best_sq = distance_sq
                best_cross = dx * (y - ay) - dy * (x - ax)
                beside = not ((index == 0 and t < 0) or (index == last and t > 1))
        distance = math.sqrt(best_sq)
        return (distance if best_cross * self.in_sign >= 0 else -distance), beside


@dataclass
class _TrackSide:
    """What the counter remembers about one track."""

    side: int = 0  # +1 in side, -1 out side, 0 not yet seen clearly on either
    depth_px: float = 0.0  # farthest distance reached on the current side
    last_distance_px: float = 0.0
    last_t_s: float = 0.0
    first_seen_t_s: float = 0.0
    zero_cross_t_s: float | None = None  # when the track last passed the line itself
    across_since_t_s: float | None = None  # first time seen far enough across, while it has to stay there
    last_xy: tuple[float, float] = (0.0, 0.0)
    counted: set[str] = field(default_factory=set)
    parent_id: int | None = None  # the track whose side it took when it split off that track's blob


class _Count(NamedTuple):
    t_s: float
    direction: str
    x: float
    y: float
    track_id: int
    parent_id: int | None


class LineCounter:
    """Counts crossings of one line by tracks, with hysteresis and minimum travel."""

    def __init__(
        self,
        config: LineConfig,
        width_px: int,
        height_px: int,
        edge_margin_px: float,
        duplicate_radius_px: float,
        stay_s: float = STAY_S,
    ) -> None:
        self.line_id = config.id
        self._stay_s = stay_s
        self._duplicate_radius_px = duplicate_radius_px
        self._recent: deque[_Count] = deque(maxlen=64)
        self.geometry = LineGeometry(config, width_px, height_px)
        self.half_band_px = config.band_frac * height_px / 2
        self.min_travel_px = max(config.min_travel_frac * height_px, 2 * self.half_band_px)
        self._width_px, self._height_px = width_px, height_px
        self._edge_margin_px = edge_margin_px
        self._tracks: dict[int, _TrackSide] = {}
        self.counts = {"in": 0, "out": 0}

    def update(
        self, track_id: int, x: float, y: float, t_s: float, parent_id: int | None = None
    ) -> CrossingRow | None:
        """Feed one track position; returns a crossing when this position completes one.

        ``parent_id`` names the track whose blob this one split from when it was born, if any.
        """
        state = self._tracks.get(track_id)
        distance, beside = self.geometry.signed_distance(x, y)
        if state is None:
            state = self._tracks[track_id] = _TrackSide(last_t_s=t_s, first_seen_t_s=t_s)
            parent = self._tracks.get(parent_id) if parent_id is not None else None
            if beside and parent and parent.side and abs(distance) < self.half_band_px:
                # Split off another track's blob inside the band (a head and shoulders parting from a
                # body): it was where that blob was, which says more than a position on the line.
                state.side, state.depth_px, state.parent_id = parent.side, parent.depth_px, parent_id
            elif beside and abs(distance) >= SIDE_MIN_BAND_SHARE * self.half_band_px:
                # First seen inside the band (in view when counting starts, stepping out of a crowd): the
                # side they are on is the side they come from. Minimum travel still applies.
                state.side, state.depth_px = (1 if distance > 0 else -1), abs(distance)
        if not beside:
            state.side, state.depth_px, state.zero_cross_t_s = 0, 0.0, None
        elif state.side and (distance > 0) != (state.last_distance_px > 0):
            state.zero_cross_t_s = _interpolate_zero(state.last_distance_px, distance, state.last_t_s, t_s)
        state.last_distance_px, state.last_t_s, state.last_xy = distance, t_s, (x, y)
        if not beside or abs(distance) < self.half_band_px:
            state.across_since_t_s = None  # back on the line: whatever it was, it did not stay across
            return None
        side = 1 if distance > 0 else -1
        if state.side == 0 or side == state.side:
            state.side = side
            state.depth_px = max(state.depth_px, abs(distance))
            state.across_since_t_s = None
            return None
        if state.depth_px + abs(distance) < self.min_travel_px:
            return None  # clearly across, but not far enough yet: wait, keep the old side
        if state.across_since_t_s is None:
            state.across_since_t_s = t_s
        if t_s - state.across_since_t_s < self._stay_s:
            return None  # across, but a merge can make a blob jump over the line and back: wait a moment
        return self._count(track_id, state, side, abs(distance), t_s)

    def end(self, track_id: int, stream_ended: bool = False) -> CrossingRow | None:
        """A track is gone. It counts if it was past the line when it left through the frame edge
        (the band is cut off there), when it vanished while waiting out ``stay_s`` across the band, or
        when the stream itself ended (there is no later frame to wait for)."""
        state = self._tracks.pop(track_id, None)
        if state is None or not state.side:
            return None
        distance = state.last_distance_px
        if (distance > 0) == (state.side > 0) or abs(distance) < SIDE_MIN_BAND_SHARE * self.half_band_px:
            return None
        if state.depth_px + abs(distance) < self.min_travel_px:
            return None
        new_side = 1 if distance > 0 else -1
        if not (stream_ended or state.across_since_t_s is not None or self._near_far_edge(*state.last_xy, new_side)):
            return None
        return self._count(track_id, state, -state.side, abs(distance), state.last_t_s)

    def _count(self, track_id: int, state: _TrackSide, side: int, depth_px: float, t_s: float) -> CrossingRow | None:
        state.side, state.depth_px, state.across_since_t_s = side, depth_px, None
        direction = "in" if side > 0 else "out"
        crossed_t_s = state.zero_cross_t_s if state.zero_cross_t_s is not None else t_s
        state.zero_cross_t_s = None
        if direction in state.counted:
            return None
        state.counted.add(direction)
        count = _Count(crossed_t_s, direction, *state.last_xy, track_id, state.parent_id)
        if self._is_duplicate(count, young=t_s - state.first_seen_t_s < YOUNG_TRACK_S):
            return None
        self._recent.append(count)
        self.counts[direction] += 1
        return CrossingRow(crossed_t_s, self.line_id, direction, track_id)

    def _is_duplicate(self, count: _Count, young: bool) -> bool:
        """The same person split in two already counted this way: the track whose side this one took
        (or that took this one's side) a moment ago, or, for a young track, any track right here."""
        radius_sq = self._duplicate_radius_px**2
        for other in self._recent:
            if other.direction != count.direction:
                continue
            apart_s = abs(count.t_s - other.t_s)
            split = other.track_id == count.parent_id or other.parent_id == count.track_id
            if split and apart_s <= SPLIT_WINDOW_S:
                return True
            here = (count.x - other.x) ** 2 + (count.y - other.y) ** 2 <= radius_sq
            if young and here and apart_s <= DUPLICATE_WINDOW_S:
                return True
        return False

    def _near_far_edge(self, x: float, y: float, side: int) -> bool:
        """Near a frame edge that lies wholly on ``side`` of the line (one the band runs into).

        Leaving through a side edge, along the line, is not evidence of having crossed it.
        """
        margin, width, height = self._edge_margin_px, self._width_px, self._height_px
        edges = (
            (x < margin, (0, 0), (0, height)),
            (x > width - margin, (width, 0), (width, height)),
            (y < margin, (0, 0), (width, 0)),
            (y > height - margin, (0, height), (width, height)),
        )
        distance = self.geometry.signed_distance
        return any(
            near and distance(*a)[0] * side > 0 and distance(*b)[0] * side > 0 for near, a, b in edges
        )


def _interpolate_zero(d0: float, d1: float, t0_s: float, t1_s: float) -> float:
    """When a track moving from signed distance d0 to d1 passed zero, assuming steady motion."""
    if d0 == d1:
        return t1_s
    return t0_s + (t1_s - t0_s) * (d0 / (d0 - d1))
