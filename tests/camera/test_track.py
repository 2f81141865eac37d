"""The tracker on hand-made detections: identities, and where a new track came from."""

from __future__ import annotations

from edge_agent.camera.detect import Detection
from edge_agent.camera.track import Tracker


def tracker() -> Tracker:
    return Tracker(320, 240, max_step_px=20.0, max_coast_frames=5, edge_margin_px=10.0)


def test_a_blob_that_splits_in_two_names_the_new_track_s_parent():
    tracks = tracker()
    for y in (200, 190, 180):
        tracks.update([Detection(160, y, 60, 90)])
    (body,) = tracks.tracks
    tracks.update([Detection(160, 190, 60, 50), Detection(165, 140, 50, 40)])  # the head parts upwards
    head = next(track for track in tracks.tracks if track is not body)
    assert body.parent_id is None and head.parent_id == body.track_id


def test_a_newcomer_away_from_every_blob_has_no_parent():
    tracks = tracker()
    for y in (200, 190, 180):
        tracks.update([Detection(160, y, 60, 90)])
    tracks.update([Detection(160, 170, 60, 90), Detection(40, 40, 50, 40)])
    assert [track.parent_id for track in tracks.tracks] == [None, None]
