"""The MAC linker: each rule on hand-made sightings, then real phones that rotate their MACs."""

from __future__ import annotations

import pytest

from collector.analytics.devices import DeviceIndex, DeviceSighting
from edge_agent.wifi.linker import DeviceLinker, LinkerConfig
from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.pipeline import WifiPath
from tests.realdata import require_real_data

EPOCH = 20_000
IPHONE, PIXEL = 0x1111, 0x2222  # capability fingerprints


def see(
    linker: DeviceLinker,
    pseudonym: int,
    at_s: float,
    *,
    fingerprint: int = IPHONE,
    randomized: bool = True,
    seq: int | None = None,
    rssi_dbm: float | None = -55.0,
    lasting_s: float = 0.05,
    epoch: int = EPOCH,
) -> int:
    """One sighting of ``pseudonym`` starting at ``at_s``; returns its cluster id."""
    return linker.cluster_for(epoch, pseudonym, at_s, at_s + lasting_s, fingerprint, randomized, seq, seq, rssi_dbm)


def test_a_mac_is_its_own_cluster_until_linked_and_keeps_its_cluster():
    linker = DeviceLinker()
    assert see(linker, 101, 0.0) == 101
    assert see(linker, 101, 500.0) == 101  # known MAC: same cluster, however late


def test_sequence_continuity_links_even_among_several_candidates():
    linker = DeviceLinker()
    see(linker, 1, 0.0, seq=4000, rssi_dbm=-50, lasting_s=1.0)
    assert see(linker, 2, 0.5, seq=1200, rssi_dbm=-52) == 2  # on the air together with 1: another phone
    # 90 s later (no burst), two candidates (ambiguous by timing): the sequence number decides, wrapping at 4096.
    assert see(linker, 3, 90.0, seq=4000 + 5 - 4096, rssi_dbm=-52) == 1
    assert linker.stats.sequence == 1


def test_a_sequence_jump_beyond_the_window_is_not_continuity():
    linker = DeviceLinker(LinkerConfig(max_gap_s=0))  # timing links off: only the sequence number could link
    see(linker, 1, 0.0, seq=100)
    assert see(linker, 2, 30.0, seq=109) == 2
    assert see(linker, 3, 200.0, seq=2) == 3  # silent longer than seq_gap_s


def _staff_phone_for_a_quarter_hour() -> DeviceLinker:
    """A staff phone on a fixed random MAC, heard every minute from 0 to 900 s."""
    linker = DeviceLinker(LinkerConfig(stable_mac_s=900))
    for minute in range(16):
        see(linker, 1, minute * 60.0, seq=minute * 10)
    return linker


def test_a_device_that_kept_its_mac_for_stable_mac_s_takes_no_new_mac_by_timing_or_burst():
    """A customer's phone of the staff phone's model is someone else."""
    assert see(_staff_phone_for_a_quarter_hour(), 2, 900.5) == 2  # a burst, were the staff phone rotating
    assert see(_staff_phone_for_a_quarter_hour(), 2, 960.0) == 2  # the only recent cluster: timing, were it rotating
    assert see(_staff_phone_for_a_quarter_hour(), 2, 930.0, seq=152) == 1  # sequence continuity still links


def test_a_device_rotating_within_stable_mac_s_is_still_linked():
    linker = DeviceLinker(LinkerConfig(stable_mac_s=900))
    for minute in range(10):
        see(linker, 1, minute * 60.0)
    assert see(linker, 2, 600.0) == 1  # its MAC lasted 9 minutes: a timing link
    assert see(linker, 3, 600.5) == 1  # and a burst


def test_a_mac_change_inside_one_scan_burst_is_the_same_phone():
    linker = DeviceLinker(LinkerConfig(max_gap_s=0))
    see(linker, 1, 0.00)
    assert see(linker, 2, 0.06) == 1
    assert see(linker, 3, 0.12, rssi_dbm=-80) == 3  # 25 dB weaker: another phone bursting at the same moment


def test_timing_links_the_only_phone_with_that_fingerprint_up_to_max_gap():
    linker = DeviceLinker(LinkerConfig(max_gap_s=300))
    see(linker, 1, 0.0, rssi_dbm=-50)
    assert see(linker, 2, 250.0, rssi_dbm=-70) == 1  # the only candidate: no RSSI test
    assert see(linker, 3, 250.0 + 301, rssi_dbm=-70) == 3


def test_when_timing_is_ambiguous_the_closest_rssi_wins_or_nobody_does():
    linker = DeviceLinker()
    see(linker, 1, 0.0, rssi_dbm=-45, lasting_s=5.0)
    assert see(linker, 2, 3.0, rssi_dbm=-70) == 2
    assert see(linker, 3, 40.0, rssi_dbm=-68) == 2
    assert see(linker, 4, 80.0, rssi_dbm=-46) == 1
    assert see(linker, 5, 120.0, rssi_dbm=-58) == 5  # 11-12 dB from both: a third phone


def test_a_cluster_heard_after_the_new_mac_started_is_busy():
    """A phone uses one MAC at a time: two MACs on the air together are two phones."""
    linker = DeviceLinker()
    see(linker, 1, 0.0, lasting_s=5.0)
    assert see(linker, 2, 2.0) == 2


def test_different_fingerprints_never_link():
    linker = DeviceLinker()
    see(linker, 1, 0.0, fingerprint=IPHONE)
    assert see(linker, 2, 0.05, fingerprint=PIXEL) == 2


def test_universal_macs_neither_join_nor_absorb_unless_told_the_bit_is_meaningless():
    linker = DeviceLinker()
    see(linker, 1, 0.0, randomized=False)  # a desktop PC
    assert see(linker, 2, 0.05) == 2  # a phone with the same chipset is not the PC
    assert see(linker, 3, 0.10, randomized=False) == 3
    anonymised = DeviceLinker(LinkerConfig(link_universal_macs=True))
    see(anonymised, 1, 0.0, randomized=False)
    assert see(anonymised, 2, 0.05, randomized=False) == 1


def test_disabled_linker_keeps_every_mac_apart():
    linker = DeviceLinker(LinkerConfig(enabled=False))
    see(linker, 1, 0.0, seq=10)
    assert see(linker, 2, 0.05, seq=11) == 2


def test_epochs_are_separate_and_only_the_newest_two_are_kept():
    linker = DeviceLinker()
    see(linker, 1, 0.0, epoch=EPOCH)
    assert see(linker, 2, 0.05, epoch=EPOCH + 1) == 2  # pseudonyms of another epoch are unrelated numbers
    see(linker, 3, 0.0, epoch=EPOCH + 2)
    assert linker.tracked_macs == 2  # epoch EPOCH and its pseudonyms are gone


def test_silent_macs_are_forgotten():
    linker = DeviceLinker(LinkerConfig(forget_after_s=600))
    for pseudonym in range(50):
        see(linker, pseudonym, pseudonym * 0.01, fingerprint=pseudonym, randomized=False)
    see(linker, 999, 700.0)
    assert linker.tracked_macs == 1


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="seq_window"):
        LinkerConfig(seq_window=4096)
    with pytest.raises(ValueError, match="forget_after_s"):
        LinkerConfig(max_gap_s=900, forget_after_s=600)


def _clusters_and_macs(capture_name: str, linker: LinkerConfig) -> tuple[int, int]:
    path = WifiPath.for_benchmark(linker=linker)
    for frame in open_capture(require_real_data(capture_name)):
        path.add_frame(*frame)
    rows = [row for window in path.flush_all() for row in window.rows]
    return len({row.cluster for row in rows}), len({row.pseudonym for row in rows})


@pytest.mark.parametrize(
    "name",
    [
        "iPhone11-B_anonymized.pcap",
        "iPhone11-C_anonymized.pcap",
        "iPhone12-M_anonymized.pcap",
        "OppoFindX3Neo-A_anonymized.pcap",
    ],
)
def test_one_real_phone_rotating_hundreds_of_macs_is_at_most_two_devices(name):
    # The dataset re-randomised every MAC, so the locally-administered bit means nothing there.
    clusters, macs = _clusters_and_macs(f"wifi/polimi/{name}", LinkerConfig(link_universal_macs=True))
    assert clusters <= 2 < 10 < macs


def test_two_sensors_of_one_site_agree_on_phones_through_shared_mac_pseudonyms():
    """Brno 2024-02-29: two sniffers in one room, one key group; the collector's merge joins their clusters."""
    per_sensor = []
    for position in (1, 2):
        path = WifiPath.for_benchmark()
        for frame in open_capture(require_real_data(f"wifi/brno/2024-02-29_position_{position}.pcap")):
            path.add_frame(*frame)
        per_sensor.append(
            [
                DeviceSighting(f"pos{position}", w.epoch, r.start_s, w.window_s, r.pseudonym, r.cluster, r.rssi_max)
                for w in path.flush_all()
                for r in w.rows
            ]
        )

    def devices(sightings: list[DeviceSighting]) -> int:
        index = DeviceIndex(sightings)
        return len({index.device_of(s.key_epoch, s.pseudonym) for s in sightings})

    first, second = per_sensor
    macs = len({s.pseudonym for s in first + second})
    site_wide = devices(first + second)
    assert max(devices(first), devices(second)) <= site_wide < 0.75 * (devices(first) + devices(second))
    assert site_wide < macs / 5  # devices, not MACs
