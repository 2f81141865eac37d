"""The counting path on the real labelled clips, scored exactly as ``bench/camera.py`` prints it.

Issue 4's figures: every clip and direction within 1 of the label, and over
all clips >= 95 % of labelled crossings counted with <= 5 % spurious counts.
At the time of writing the counter reaches 42/43 (97.7 %; missed: femb F1,
a cut in the video at frame 2 that makes the man jump further than anyone
walks in a frame) with 1 spurious count of 43 (plaza D1, whom the labels
exclude as crossed just before the video starts; their blob centre reads a
little above the line in the first frame).
"""

from __future__ import annotations

import pytest

from bench.camera import clips, evaluate
from tests.realdata import require_real_data

pytestmark = pytest.mark.slow

TOLERANCE_S = 0.75
#: Issue 4's figures.
MIN_RECALL, MAX_SPURIOUS_SHARE = 0.95, 0.05


@pytest.fixture(scope="module")
def scores():
    require_real_data("video/labels.json")
    return {clip.file: evaluate(clip, TOLERANCE_S) for clip in clips()}


@pytest.mark.parametrize("file", ["femb_peopleCounter.avi", "koba_bus_overhead_door.avi", "plaza_topdown_example_02.mp4"])
def test_every_clip_and_direction_is_within_one_of_the_label(scores, file):
    for direction, score in scores[file].items():
        assert abs(score.counted - score.labelled) <= 1, (file, direction, score)


def test_over_all_clips_enough_is_counted_and_little_is_spurious(scores):
    results = [score for clip_scores in scores.values() for score in clip_scores.values()]
    labelled = sum(s.labelled for s in results)
    matched = sum(s.matched for s in results)
    counted = sum(s.counted for s in results)
    assert labelled == 43
    assert matched / labelled >= MIN_RECALL, f"{matched}/{labelled}"
    assert (counted - matched) / counted <= MAX_SPURIOUS_SHARE, f"{counted - matched} spurious of {counted}"
