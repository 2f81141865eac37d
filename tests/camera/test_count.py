"""The line counter's rules on hand-made track paths: hysteresis, travel, one count per direction, edges."""

from __future__ import annotations

import pytest

from edge_agent.camera.config import LineConfig
from edge_agent.camera.count import LineCounter, LineGeometry

W, H = 320, 240
HORIZONTAL = LineConfig(id="door", points=[[0.0, 0.5], [1.0, 0.5]], in_side="bottom", band_frac=0.1, min_travel_frac=0.2)


def counter(config: LineConfig = HORIZONTAL, stay_s: float = 0.0) -> LineCounter:
    return LineCounter(config, W, H, edge_margin_px=12.0, duplicate_radius_px=15.0, stay_s=stay_s)


def feed(line_counter: LineCounter, track_id: int, ys: list[float], x: float = 160.0, t0_s: float = 0.0) -> list:
    rows = []
    for step, y in enumerate(ys):
        row = line_counter.update(track_id, x, y, t0_s + step * 0.04)
        if row is not None:
            rows.append(row)
    return rows


def test_a_walk_across_counts_once_with_the_time_the_line_was_passed():
    rows = feed(counter(), 1, [40, 60, 80, 100, 115, 125, 140, 160, 180])
    assert [(r.direction, r.track, r.line) for r in rows] == [("in", 1, "door")]
    assert rows[0].t == pytest.approx(0.04 * 4.5)  # halfway between y=115 (step 4) and y=125 (step 5)


def test_jitter_inside_the_band_never_counts():
    ys = [60, 90, 110, 125, 113, 127, 112, 128, 111, 126, 60]
    assert feed(counter(), 1, ys) == []


def test_a_crossing_shorter_than_the_minimum_travel_waits_until_it_is_long_enough():
    line_counter = counter()
    # Seen first just above the band (y=106), then just below it (y=134): 28 px < 48 px of travel.
    assert feed(line_counter, 1, [106, 134]) == []
    assert [r.direction for r in feed(line_counter, 1, [150, 160], t0_s=1.0)] == ["in"]


def test_back_and_forth_counts_each_direction_at_most_once_per_track():
    line_counter = counter()
    ys = [40, 200, 40, 200, 40, 200]
    assert [r.direction for r in feed(line_counter, 7, ys)] == ["in", "out"]
    assert line_counter.counts == {"in": 1, "out": 1}


def test_a_track_that_starts_on_the_line_has_no_side_to_come_from():
    assert feed(counter(), 1, [118, 122, 150, 200]) == []


def test_a_track_first_seen_inside_the_band_comes_from_the_side_it_is_on():
    # Half band 12 px: y=112 is 8 px above the line, inside the band but clearly above it.
    assert [r.direction for r in feed(counter(), 1, [112, 116, 125, 140, 160])] == ["in"]
    # Going back the way it came is no crossing, and neither is wandering inside the band.
    assert feed(counter(), 2, [112, 100, 60]) == []
    assert feed(counter(), 3, [112, 126, 113, 127]) == []


def test_a_track_split_off_a_blob_inside_the_band_comes_from_that_blob_s_side():
    line_counter = counter()
    feed(line_counter, 1, [200, 180, 160])  # a big person below the line, in side
    # Their head and shoulders part from the body right on the line (y=118) and go on up, then back.
    rows = [line_counter.update(2, 160, y, 0.12 + 0.04 * i, parent_id=1) for i, y in enumerate([118, 108, 90, 80])]
    assert [r.direction for r in rows if r] == ["out"]
    # Without a parent a track born right on the line has no side to come from.
    assert feed(line_counter, 3, [118, 108, 90, 80], x=60) == []


def test_a_fragment_that_took_its_body_s_side_and_its_body_count_once():
    line_counter = counter()
    feed(line_counter, 1, [40 + 2.5 * step for step in range(29)])  # 1.1 s coming down, to y=110
    # The leading part of its blob splits off just below the line and counts first; the body, a step
    # behind, crosses 0.4 s later and well apart (not the same place and moment).
    ahead = [line_counter.update(2, 160, y, 1.16 + 0.04 * i, parent_id=1) for i, y in enumerate([122, 135, 150])]
    body = feed(line_counter, 1, [110 + 2.5 * step for step in range(12)], t0_s=1.16)
    assert [r.track for r in ahead if r] == [2] and body == []


def test_leaving_through_the_frame_edge_just_after_the_line_counts():
    near_edge = LineConfig(points=[[0.0, 0.93], [1.0, 0.93]], in_side="bottom", band_frac=0.1, min_travel_frac=0.2)
    line_counter = counter(near_edge)
    # The line is at y=223; the band's lower half (to y=235) barely fits, a blob centre never gets there.
    assert feed(line_counter, 1, [120, 160, 200, 220, 230]) == []
    row = line_counter.end(1)
    assert row is not None and row.direction == "in"


def test_a_track_lost_past_the_line_in_the_middle_of_the_picture_does_not_count():
    line_counter = counter()
    feed(line_counter, 1, [60, 100, 125])
    assert line_counter.end(1) is None


def test_walking_around_the_end_of_a_short_line_is_not_a_crossing():
    short = LineConfig(points=[[0.3, 0.5], [0.7, 0.5]], in_side="bottom", band_frac=0.1, min_travel_frac=0.2)
    line_counter = counter(short)
    path = [(160, 40), (40, 80), (20, 120), (40, 160), (160, 200)]  # around the left end (x=96)
    assert [line_counter.update(1, x, y, i * 0.04) for i, (x, y) in enumerate(path)] == [None] * 5
    assert [r.direction for r in feed(line_counter, 2, [40, 80, 160, 200], x=160)] == ["in"]


def test_a_fragment_of_one_person_counts_once_but_people_side_by_side_count_twice():
    line_counter = counter()
    long_lived = [40 + 3 * step for step in range(32)]  # 1.3 s in view before reaching y=135
    first = feed(line_counter, 1, [*long_lived, 160, 200], x=160)
    fragment = feed(line_counter, 2, [70, 140, 190], x=165, t0_s=0.04 * 31)  # born from 1's blob a moment ago
    beside = feed(line_counter, 3, [*long_lived, 160, 200], x=210)
    follower = feed(line_counter, 4, [*long_lived, 160, 200], x=162, t0_s=0.04)  # one behind, not a fragment
    assert len(first) == 1 and fragment == [] and len(beside) == 1 and len(follower) == 1


def test_a_blob_that_jumps_across_and_back_is_not_a_crossing_one_that_stays_is():
    line_counter = counter(stay_s=0.2)
    # Two people merge: the blob centre jumps over the line for three frames, then they part again.
    assert feed(line_counter, 1, [40, 60, 80, 170, 172, 171, 80, 70]) == []
    rows = feed(line_counter, 2, [40, 60, 80, 170, 175, 180, 185, 190, 195, 200])
    assert [r.direction for r in rows] == ["in"]


def test_a_track_that_vanishes_while_waiting_to_stay_across_still_counts():
    line_counter = counter(stay_s=0.2)
    assert feed(line_counter, 1, [40, 60, 80, 170]) == []
    row = line_counter.end(1)
    assert row is not None and row.direction == "in"


def test_leaving_through_a_side_edge_along_the_line_is_no_evidence_of_crossing():
    line_counter = counter()
    path = [(200, 60), (240, 90), (280, 115), (315, 125)]  # drifts right, ends just past the line at the right edge
    for i, (x, y) in enumerate(path):
        line_counter.update(1, x, y, i * 0.04)
    assert line_counter.end(1) is None


@pytest.mark.parametrize(
    ("points", "in_side", "inside_xy"),
    [
        ([[0, 0.5], [1, 0.5]], "bottom", (160, 200)),
        ([[0, 0.5], [1, 0.5]], "top", (160, 40)),
        ([[1, 0.5], [0, 0.5]], "bottom", (160, 200)),  # point order does not matter
        ([[0.5, 0], [0.5, 1]], "left", (40, 120)),
        ([[0.5, 0], [0.5, 1]], "right", (280, 120)),
        ([[0, 0.2], [0.5, 0.8], [1, 0.2]], "bottom", (160, 230)),  # a V-shaped polyline
    ],
)
def test_the_named_in_side_is_positive(points, in_side, inside_xy):
    geometry = LineGeometry(LineConfig(points=points, in_side=in_side), W, H)
    distance, beside = geometry.signed_distance(*inside_xy)
    assert distance > 0 and beside


def test_a_polyline_counts_a_crossing_of_any_segment():
    vee = LineConfig(points=[[0, 0.2], [0.5, 0.8], [1, 0.2]], in_side="bottom", band_frac=0.1, min_travel_frac=0.2)
    line_counter = counter(vee)
    # Crosses the right arm of the V from its inside (above) to below it.
    rows = [line_counter.update(1, x, y, i * 0.04) for i, (x, y) in enumerate([(250, 40), (260, 80), (280, 140), (300, 200)])]
    assert [r.direction for r in rows if r] == ["in"]


def test_an_in_side_along_the_line_is_refused():
    with pytest.raises(ValueError, match="runs along the line"):
        LineGeometry(LineConfig(points=[[0, 0.5], [1, 0.5]], in_side="left"), W, H)
