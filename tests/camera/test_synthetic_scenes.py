"""The counting path on synthetic scenes with exact truth (the issue's list, one test each)."""

from __future__ import annotations

import pytest

from tests.camera.scenes import Scene, count_scene, turn_back, walk

pytestmark = pytest.mark.slow  # each scene is a few hundred rendered frames through the real path

#: Walking pace of these scenes: about 1.3 m/s for a 45 cm wide person, in pixels per frame at 25 fps.
NORMAL_PX_PER_FRAME = 3.0
DARK, LIGHT = 40, 225


def single_walkers() -> Scene:
    walkers = [
        walk(40 + 60 * (i % 5), start_frame=40 + 70 * i, direction="in" if i % 2 else "out",
             speed_px_per_frame=NORMAL_PX_PER_FRAME * (0.8 + 0.1 * (i % 4)), shade=DARK if i % 3 else LIGHT)
        for i in range(10)
    ]  # fmt: skip
    return Scene(walkers, frames=40 + 70 * 10 + 120)


def test_single_walkers_both_ways_are_counted_exactly():
    score = count_scene(single_walkers())
    assert score.truth == 10
    assert (score.matched, score.counted) == (10, 10)


def test_groups_side_by_side_are_counted_person_by_person():
    walkers = []
    start = 30
    for group, size in enumerate([2, 3, 2, 2, 3, 2, 2, 3]):
        direction = "in" if group % 2 else "out"
        left = 160 - (size - 1) * 21
        walkers += [walk(left + 42 * member, start, direction, NORMAL_PX_PER_FRAME, shade=DARK + 15 * member)
                    for member in range(size)]  # fmt: skip
        start += 110
    score = count_scene(Scene(walkers, frames=start + 60))
    assert score.truth == 19
    assert score.recall >= 0.95, score
    assert score.spurious <= 0.05 * score.truth, score


def test_fast_walkers_are_counted():
    # 10 px per frame at 25 fps crosses the whole picture in a second: a run, not a walk.
    walkers = [
        walk(50 + 55 * (i % 5), start_frame=20 + 35 * i, direction="in" if i % 2 else "out",
             speed_px_per_frame=8.0 + 2.0 * (i % 3), shade=DARK if i % 2 else LIGHT)
        for i in range(20)
    ]  # fmt: skip
    score = count_scene(Scene(walkers, frames=20 + 35 * 20 + 40))
    assert score.truth == 20
    assert score.recall >= 0.95, score
    assert score.spurious <= 1, score


def test_people_who_stop_on_the_line_and_turn_back_are_not_counted():
    walkers = [
        turn_back(60 + 50 * (i % 5), start_frame=20 + 120 * i, from_side="in" if i % 2 else "out", stop_frames=25)
        for i in range(6)
    ]
    # ... and one who stops on the line, thinks again, and goes through: exactly one count.
    through = walk(160, start_frame=20 + 120 * 6, direction="in", speed_px_per_frame=NORMAL_PX_PER_FRAME)
    (f0, x, y0), (f1, _, y1) = through.keyframes
    pause = f0 + round((120 - y0) / NORMAL_PX_PER_FRAME)
    through.keyframes = [(f0, x, y0), (pause, x, 120.0), (pause + 25, x, 120.0), (f1 + 25, x, y1)]
    score = count_scene(Scene([*walkers, through], frames=20 + 120 * 7 + 80))
    assert score.truth == 1
    assert (score.matched, score.counted) == (1, 1)


def test_a_lighting_change_neither_adds_nor_loses_counts():
    scene = single_walkers()
    # Lights dim by a third in a moment between two walkers, later brighten slowly over four seconds.
    scene.lighting = [(100, 1.0), (101, 0.67), (420, 0.67), (520, 1.1)]
    score = count_scene(scene)
    assert score.truth == 10
    assert score.matched >= 9 and score.spurious == 0, score


def test_camera_noise_neither_adds_nor_loses_counts():
    scene = single_walkers()
    scene.noise_sigma = 10.0
    score = count_scene(scene)
    assert (score.matched, score.counted) == (10, 10), score
