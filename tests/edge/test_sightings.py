"""Sighting aggregation: nothing lost, windows right, raw captures folded faithfully."""

from __future__ import annotations

import pytest

from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.pipeline import WifiPath
from edge_agent.wifi.probe import parse_frame
from edge_agent.wifi.sightings import SightingAggregator
from tests.realdata import require_real_data


def _rows(closed):
    return [row for window in closed for row in window.rows]


def test_folds_frames_of_one_device_in_one_window():
    agg = SightingAggregator(window_s=10)
    agg.add(7, 1000.5, 42, -70, 6, True, 99, 100)
    agg.add(7, 1003.0, 42, -60, 6, True, 99, 101)
    agg.add(7, 1009.9, 42, None, 6, True, 99, 105)
    agg.add(7, 1004.0, 43, -80, 11, False, 98, None)
    (window,) = agg.close_all()
    assert window.epoch == 7 and window.window_s == 10
    by_pseudonym = {row.pseudonym: row for row in window.rows}
    first = by_pseudonym[42]
    assert (first.start_s, first.frames, first.rssi_max, first.rssi_mean) == (1000, 3, -60, -65.0)
    assert (first.seq_first, first.seq_last, first.channel, first.randomized) == (100, 105, 6, True)
    assert by_pseudonym[43].seq_first is None and by_pseudonym[43].rssi_max == -80


def test_windows_close_one_window_after_the_stream_moves_on():
    agg = SightingAggregator(window_s=10)
    agg.add(1, 1001, 1, -50, 1, False, 0, 0)
    agg.add(1, 1015, 1, -50, 1, False, 0, 1)
    assert agg.close_ready() == []  # 1000 is still inside the lateness allowance
    agg.add(1, 1021, 1, -50, 1, False, 0, 2)
    closed = agg.close_ready()
    assert [w.rows[0].start_s for w in closed] == [1000]
    assert agg.open_windows == 2


def test_late_frames_are_never_dropped():
    agg = SightingAggregator(window_s=10)
    agg.add(1, 2000, 1, -50, 1, False, 0, 0)
    agg.add(1, 2100, 1, -50, 1, False, 0, 0)
    closed = agg.close_ready()
    agg.add(1, 1500, 1, -50, 1, False, 0, 0)  # far older than anything open
    closed += agg.close_all()
    assert sum(row.frames for row in _rows(closed)) == 3


def test_close_before_uses_wall_clock_for_quiet_periods():
    agg = SightingAggregator(window_s=10)
    agg.add(1, 1001, 1, -50, 1, False, 0, 0)
    assert agg.close_before(1009.9) == []
    assert len(agg.close_before(1010)) == 1


def test_brno_capture_every_probe_request_is_in_a_sighting():
    capture = require_real_data("wifi/brno/2022-11-22_position_1.pcap")
    path = WifiPath.for_benchmark()
    macs: set[bytes] = set()
    for timestamp_s, linktype, frame in open_capture(capture):
        path.add_frame(timestamp_s, linktype, frame)
        probe = parse_frame(timestamp_s, linktype, frame)
        if probe is not None:
            macs.add(probe.source_mac)
    rows = _rows(path.flush_all())
    assert path.stats.probe_requests == 25_447
    assert sum(row.frames for row in rows) == 25_447
    assert len({row.pseudonym for row in rows}) == len(macs)
    assert all(row.start_s % 10 == 0 for row in rows)
    assert all(row.rssi_max is None or -120 <= row.rssi_max <= 0 for row in rows)
    # One (pseudonym, window) per row: the in-order capture never splits a window.
    assert len({(row.pseudonym, row.start_s) for row in rows}) == len(rows)


@pytest.mark.parametrize("name", ["iPhone11-B_anonymized.pcap", "OppoFindX3Neo-A_anonymized.pcap"])
def test_polimi_captures_with_odd_rssi_and_timestamps_fold_without_loss(name):
    capture = require_real_data(f"wifi/polimi/{name}")
    path = WifiPath.for_benchmark()
    for timestamp_s, linktype, frame in open_capture(capture):
        path.add_frame(timestamp_s, linktype, frame)
    rows = _rows(path.flush_all())
    assert sum(row.frames for row in rows) == path.stats.probe_requests > 0
    assert all(row.rssi_max is None or -120 <= row.rssi_max <= 0 for row in rows)
