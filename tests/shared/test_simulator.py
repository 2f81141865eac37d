"""The store simulator keeps its promises: deterministic, thresholds held with a margin, pcaps the edge reads."""

from __future__ import annotations

from datetime import date

from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.pipeline import WifiPath
from shared.simulator import Scenario, ScenarioConfig, two_sensor_shop

DAY = ScenarioConfig(first_day=date(2024, 3, 5), visitors_per_day=20, passersby_per_day=20, seed=4)


def test_the_same_config_gives_the_same_store_and_batches():
    first, second = (Scenario.generate(two_sensor_shop(), DAY) for _ in range(2))
    assert first.people == second.people and first.batches() == second.batches()
    assert Scenario.generate(two_sensor_shop(), ScenarioConfig(first_day=date(2024, 3, 5), seed=5)).people != first.people


def test_visitors_and_browsers_are_clear_of_the_five_minute_threshold():
    """Visitors spend at least 310 s in the visitor band (first to last tick + one window), browsers at most 190 s."""
    layout = two_sensor_shop()
    in_band = {z.zone_id for z in layout.zones if z.heard_dbm[z.device_id] >= -65}
    for person in Scenario.generate(layout, DAY).people:
        ticks = [t for t, zone_id in person.ticks() if zone_id in in_band]
        band_s = ticks[-1] + layout.window_s - ticks[0] if ticks else 0
        if person.kind == "visitor":
            assert band_s >= 310
        elif person.kind in ("browser", "passerby"):
            assert band_s <= 190


def test_a_written_pcap_goes_through_the_real_edge_path(tmp_path):
    scenario = Scenario.generate(two_sensor_shop(), DAY)
    path = tmp_path / "front.pcap"
    frames = scenario.probe_frames("front")
    assert scenario.write_pcap("front", path) == len(frames)
    edge = WifiPath.for_benchmark()
    for frame in open_capture(path):
        edge.add_frame(*frame)
    rows = [row for window in edge.flush_all() for row in window.rows]
    assert sum(row.frames for row in rows) == len(frames) == edge.stats.probe_requests
    assert len({row.cluster for row in rows}) < len({row.pseudonym for row in rows})  # rotating MACs linked
