"""The collector's Wi-Fi estimators: site-wide devices, presence, stationary devices — by hand and on real days."""

from __future__ import annotations

import statistics

import pytest

from collector.analytics.devices import DeviceIndex, DeviceSighting
from collector.analytics.presence import PresenceConfig, devices_present, presence_intervals
from collector.analytics.stationary import StationaryConfig, stationary_devices
from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.pipeline import WifiPath
from tests.realdata import require_real_data

EPOCH = 19_800
T0 = 1_710_000_000  # a multiple of 300 and 3,600


def sighting(
    pseudonym: int,
    start_s: int,
    cluster: int | None = None,
    sensor: str = "a",
    rssi: int | None = -50,
    epoch: int = EPOCH,
) -> DeviceSighting:
    return DeviceSighting(sensor, epoch, start_s, 10, pseudonym, pseudonym if cluster is None else cluster, rssi)


def test_clusters_sharing_a_mac_on_different_sensors_are_one_device_whatever_the_order():
    rows = [
        sighting(7, T0, cluster=5, sensor="a"),  # sensor a: MACs 5 and 7 are one phone
        sighting(5, T0, cluster=5, sensor="a"),
        sighting(7, T0, cluster=7, sensor="b"),  # sensor b first heard it on MAC 7, then 9
        sighting(9, T0 + 60, cluster=7, sensor="b"),
        sighting(11, T0, sensor="b"),
    ]
    for ordered in (rows, rows[::-1]):
        index = DeviceIndex(ordered)
        assert {index.device_of(EPOCH, p) for p in (5, 7, 9)} == {5}  # the smallest pseudonym names it
        assert index.device_of(EPOCH, 11) == 11
        assert index.devices == 2
    assert DeviceIndex(rows).device_of(EPOCH + 1, 9) == 9  # other epochs: unrelated numbers


def test_presence_bridges_short_silences_and_ignores_out_of_band_sightings():
    config = PresenceConfig(gap_s=300, band_dbm=-65)
    rows = [
        sighting(1, T0),
        sighting(1, T0 + 200),  # 190 s silence: still present
        sighting(1, T0 + 600),  # 390 s silence: a new presence
        sighting(2, T0, rssi=-80),  # out on the street
        sighting(3, T0 + 30, rssi=None),  # a sensor without signal strength counts as in the zone
    ]
    intervals = presence_intervals(rows, lambda epoch, pseudonym: pseudonym, config)
    assert intervals == {1: [(T0, T0 + 210), (T0 + 600, T0 + 610)], 3: [(T0 + 30, T0 + 40)]}


def test_devices_present_is_the_mean_occupancy_of_the_bucket_minutes():
    config = PresenceConfig(bucket_s=300, resolution_s=60)
    intervals = {1: [(T0, T0 + 300.0)], 2: [(T0 + 60, T0 + 120.0)], 3: [(T0 + 250, T0 + 400.0)]}
    present = devices_present(intervals, T0, T0 + 600, config)
    # minutes 0..4: device 1 in all five, device 2 in minute 1, device 3 in minute 4; bucket 2: device 3 in minutes 5, 6
    assert present == {T0: (5 + 1 + 1) / 5, T0 + 300: 2 / 5}
    assert devices_present(intervals, T0, T0 + 600, config, exclude={1}) == {T0: 2 / 5, T0 + 300: 2 / 5}


def test_a_device_heard_in_many_hours_is_stationary():
    rows = [sighting(1, T0 + hour * 3_600 + 1_000) for hour in range(6)]
    rows += [sighting(2, T0 + 100), sighting(2, T0 + 3_700)]
    assert stationary_devices(rows, lambda epoch, pseudonym: pseudonym, StationaryConfig(min_hours=6)) == {1}
    assert stationary_devices(rows, lambda epoch, pseudonym: pseudonym, StationaryConfig(min_hours=2)) == {1, 2}


def test_config_rejects_a_bucket_that_is_not_whole_steps():
    with pytest.raises(ValueError):
        PresenceConfig(bucket_s=300, resolution_s=70)


def _day(day: str) -> list[DeviceSighting]:
    rows = []
    for position in (1, 2):
        path = WifiPath.for_benchmark()
        for frame in open_capture(require_real_data(f"wifi/brno/{day}_position_{position}.pcap")):
            path.add_frame(*frame)
        rows += [
            DeviceSighting(f"pos{position}", w.epoch, r.start_s, w.window_s, r.pseudonym, r.cluster, r.rssi_max)
            for w in path.flush_all()
            for r in w.rows
        ]
    return rows


def test_the_empty_saturday_is_stationary_devices_only():
    """Brno 2024-03-23: nobody in the lab, desktop PCs probing all day."""
    rows = _day("2024-03-23")
    index = DeviceIndex(rows)
    fixed = stationary_devices(rows, index.device_of)
    any_rssi = PresenceConfig(band_dbm=-120)
    intervals = presence_intervals(rows, index.device_of, any_rssi)
    start_s, end_s = min(r.start_s for r in rows), max(r.start_s + r.window_s for r in rows)
    everything = statistics.fmean(devices_present(intervals, start_s, end_s, any_rssi).values())
    visitors = statistics.fmean(devices_present(intervals, start_s, end_s, any_rssi, exclude=fixed).values())
    assert len(fixed) >= 5 and everything >= 3.0
    assert visitors < 0.1 * everything  # what is left after excluding the flagged devices is next to nothing
    in_band = presence_intervals(rows, index.device_of, PresenceConfig())
    assert max(devices_present(in_band, start_s, end_s).values(), default=0.0) <= 1.0
