"""Replay pacing: anchored to the first packet, clamped on clock jumps, stoppable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edge_agent.wifi.capture import ReplaySource
from edge_agent.wifi.pcap import open_capture
from tests.realdata import require_real_data
from tests.wifi.builders import management_frame, pcap_bytes, write

START_S = 1_700_000_000.0


def capture_at(tmp_path: Path, offsets_s: list[float]) -> Path:
    """A capture with one probe request at each offset from START_S, in file order."""
    packets = [(START_S + offset_s, management_frame(sequence_number=n)) for n, offset_s in enumerate(offsets_s)]
    return write(tmp_path / "replay.pcap", pcap_bytes(packets, 105))


def timed_replay(source: ReplaySource) -> tuple[list[tuple[float, int, bytes]], float]:
    started_s = time.monotonic()
    packets = list(source)
    return packets, time.monotonic() - started_s


def test_speed_ten_replays_two_seconds_in_a_fifth(tmp_path: Path) -> None:
    offsets_s = [index * 0.1 for index in range(21)]
    path = capture_at(tmp_path, offsets_s)
    packets, elapsed_s = timed_replay(ReplaySource(path, speed=10))
    assert 0.18 <= elapsed_s <= 0.6
    assert packets == list(open_capture(path))  # capture-time timestamps and frames untouched


def test_unpaced_replay_does_not_wait(tmp_path: Path) -> None:
    path = capture_at(tmp_path, [0.0, 30.0, 60.0])
    packets, elapsed_s = timed_replay(ReplaySource(path, speed=None))
    assert len(packets) == 3 and elapsed_s < 0.1


def test_small_backsteps_do_not_add_up_to_drift(tmp_path: Path) -> None:
    """Merged sniffers step back a little all the time; pacing follows the capture clock, not the steps."""
    offsets_s = [value for index in range(10) for value in (index * 0.1 + 0.15, index * 0.1)]
    _, elapsed_s = timed_replay(ReplaySource(capture_at(tmp_path, offsets_s), speed=1, max_wait_s=1.0))
    # Due times follow the capture clock: the latest packet (1.05 s) is due 0.9 s after the
    # first (0.15 s); waiting out each forward step (9 x 0.25 s) instead would take 2.25 s.
    assert 0.6 <= elapsed_s <= 1.3


def test_forward_clock_jump_waits_at_most_max_wait(tmp_path: Path) -> None:
    path = capture_at(tmp_path, [0.0, 0.1, 3600.0, 3600.1])
    packets, elapsed_s = timed_replay(ReplaySource(path, speed=1, max_wait_s=0.2))
    assert 0.35 <= elapsed_s <= 0.9  # 0.1 + 0.2 (clamped hour) + 0.1
    assert [timestamp_s - START_S for timestamp_s, _, _ in packets] == pytest.approx([0.0, 0.1, 3600.0, 3600.1])


def test_backward_outlier_costs_at_most_max_wait(tmp_path: Path) -> None:
    path = capture_at(tmp_path, [100.0, 100.1, -5000.0, 100.2, 100.3])
    packets, elapsed_s = timed_replay(ReplaySource(path, speed=1, max_wait_s=0.2))
    assert len(packets) == 5
    assert 0.35 <= elapsed_s <= 0.9  # 0.1 + 0 (back) + 0.2 (clamped return) + 0.1


def test_stop_event_ends_a_long_wait_promptly(tmp_path: Path) -> None:
    stop = threading.Event()
    source = ReplaySource(capture_at(tmp_path, [0.0, 1.0, 60.0, 120.0]), speed=1, stop_event=stop, max_wait_s=60)
    threading.Timer(1.2, stop.set).start()
    packets, elapsed_s = timed_replay(source)
    assert len(packets) == 2
    assert 1.1 <= elapsed_s <= 2.0


@pytest.mark.parametrize("speed", [None, 1.0])
def test_stopped_source_yields_nothing(tmp_path: Path, speed: float | None) -> None:
    source = ReplaySource(capture_at(tmp_path, [0.0, 0.1]), speed=speed)
    source.stop()
    assert list(source) == []


@pytest.mark.parametrize("speed", [0, -1.0, float("nan")])
def test_speed_must_be_positive(tmp_path: Path, speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(capture_at(tmp_path, [0.0]), speed=speed)


def test_real_polimi_capture_with_backsteps_replays_on_time() -> None:
    """Three sniffers merged: 124 steps back in time. Span 1851 s at speed 10,000 -> ~0.19 s."""
    path = require_real_data("wifi/polimi/iPhone11-C_anonymized.pcap")
    with ReplaySource(path, speed=10_000) as source:
        packets, elapsed_s = timed_replay(source)
    assert packets == list(open_capture(path))
    assert len(packets) == 531
    assert 0.15 <= elapsed_s <= 1.0
