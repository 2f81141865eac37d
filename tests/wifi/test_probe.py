"""The probe-request parser against hand-built frames, random bytes, and tshark on real captures."""

from __future__ import annotations

import logging
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.probe import (
    ProbeRequest,
    SkipStats,
    channel_for_frequency,
    is_locally_administered,
    parse_frame,
)
from tests.realdata import require_real_data
from tests.wifi.builders import PHONE_MAC, PROBE_IES, management_frame, radiotap

RADIOTAP = 127
RAW_80211 = 105
PROBE = management_frame()
#: Channel field: 2437 MHz (channel 6), flags 2 GHz + CCK.
CHANNEL_6 = struct.pack("<HH", 2437, 0x00A0)
TSFT = struct.pack("<Q", 0x0123_4567_89AB_CDEF)

# Presence bits of the first namespace.
TSFT_BIT, FLAGS_BIT, RATE_BIT, CHANNEL_BIT, FHSS_BIT, SIGNAL_BIT, ANTENNA_BIT = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x800
RADIOTAP_NS_NEXT, EXT = 0x2000_0000, 0x8000_0000
FLAG_FCS_AT_END, FLAG_BAD_FCS = 0x10, 0x40


def parse(linktype: int, frame: bytes) -> tuple[ProbeRequest | None, SkipStats]:
    stats = SkipStats()
    return parse_frame(12.5, linktype, frame, stats), stats


def skipped_for(linktype: int, frame: bytes) -> str:
    """The one counter a skipped frame incremented."""
    probe, stats = parse(linktype, frame)
    assert probe is None
    ((reason, count),) = [(name, count) for name, count in stats.as_dict().items() if count]
    assert count == 1
    return reason


# ------------------------------------------------------------------ happy paths


def test_raw_80211_probe_request() -> None:
    probe, stats = parse(RAW_80211, PROBE)
    assert probe == ProbeRequest(12.5, PHONE_MAC, None, None, None, 0x5A5, PROBE_IES)
    assert stats == SkipStats()


def test_radiotap_as_brno_sniffer_writes_it() -> None:
    """Channel + dBm antenna signal + antenna: the layout of every Brno frame."""
    header = radiotap([CHANNEL_BIT | SIGNAL_BIT | ANTENNA_BIT], CHANNEL_6 + bytes([256 - 88, 0]))
    probe, _ = parse(RADIOTAP, header + PROBE)
    assert probe == ProbeRequest(12.5, PHONE_MAC, -88, 2437, 6, 0x5A5, PROBE_IES)


def test_channel_is_two_byte_aligned_after_flags_and_rate() -> None:
    # Flags at 8, Rate at 9 -> Channel at 10 (already aligned); Flags alone -> one pad byte.
    with_rate = radiotap([FLAGS_BIT | RATE_BIT | CHANNEL_BIT | SIGNAL_BIT], b"\x00\x02" + CHANNEL_6 + b"\xc4")
    without_rate = radiotap([FLAGS_BIT | CHANNEL_BIT | SIGNAL_BIT], b"\x00" + b"\xee" + CHANNEL_6 + b"\xc4")
    for header in (with_rate, without_rate):
        probe, _ = parse(RADIOTAP, header + PROBE)
        assert probe is not None
        assert (probe.frequency_mhz, probe.channel, probe.rssi_dbm) == (2437, 6, -60)


def test_tsft_with_extended_bitmap_is_aligned_to_eight_bytes_from_header_start() -> None:
    """Two presence words end at byte 12, so TSFT needs 4 pad bytes and starts at 16."""
    words = [EXT | RADIOTAP_NS_NEXT | TSFT_BIT | FLAGS_BIT | CHANNEL_BIT | SIGNAL_BIT, SIGNAL_BIT]
    # pad(4) TSFT(8)@16 Flags@24 pad@25 Channel@26 signal@30; then the second namespace's signal @31
    fields = b"\xaa" * 4 + TSFT + b"\x00" + b"\xbb" + CHANNEL_6 + bytes([256 - 71]) + bytes([256 - 30])
    probe, _ = parse(RADIOTAP, radiotap(words, fields) + PROBE)
    assert probe is not None
    assert (probe.rssi_dbm, probe.frequency_mhz) == (-71, 2437)


def test_tsft_after_three_presence_words_needs_no_padding() -> None:
    words = [EXT | TSFT_BIT | SIGNAL_BIT, EXT, 0]
    probe, _ = parse(RADIOTAP, radiotap(words, TSFT + bytes([256 - 45])) + PROBE)
    assert probe is not None and probe.rssi_dbm == -45


def test_fhss_and_rate_shift_the_antenna_signal() -> None:
    header = radiotap([RATE_BIT | FHSS_BIT | SIGNAL_BIT], b"\x02" + b"\x01\x02" + bytes([256 - 50]))
    probe, _ = parse(RADIOTAP, header + PROBE)
    assert probe is not None and probe.rssi_dbm == -50 and probe.frequency_mhz is None


def test_aircrack_style_multi_namespace_header_reads_the_first_namespace() -> None:
    """Presence words as in aircrack_test1: 0xa000402f, 0xa0000820, 0x00000820 (it_len 38)."""
    words = [0xA000402F, 0xA0000820, 0x00000820]
    fields = (
        TSFT  # at 16: three presence words end on an 8-byte boundary
        + b"\x10"  # Flags: FCS at end
        + b"\x02"  # Rate
        + CHANNEL_6
        + bytes([256 - 77])  # dBm antenna signal, first namespace
        + b"\x00"  # pad
        + b"\x00\x00"  # RX flags
        + bytes([256 - 76, 0, 256 - 78, 1])  # per-chain signal + antenna, namespaces 2 and 3
    )
    header = radiotap(words, fields)
    assert len(header) == 38
    probe, _ = parse(RADIOTAP, header + PROBE + b"FCS!")
    assert probe is not None
    assert (probe.rssi_dbm, probe.channel, probe.information_elements) == (-77, 6, PROBE_IES)


def test_fcs_at_end_is_stripped_from_information_elements() -> None:
    header = radiotap([FLAGS_BIT], bytes([FLAG_FCS_AT_END]))
    probe, _ = parse(RADIOTAP, header + PROBE + b"\x01\x02\x03\x04")
    assert probe is not None and probe.information_elements == PROBE_IES


def test_bad_fcs_is_dropped_and_counted() -> None:
    header = radiotap([FLAGS_BIT], bytes([FLAG_FCS_AT_END | FLAG_BAD_FCS]))
    assert skipped_for(RADIOTAP, header + PROBE + b"\x01\x02\x03\x04") == "bad_fcs"


def test_order_bit_means_ht_control_before_the_elements() -> None:
    frame = management_frame(fc1=0x80, body=b"HTC!" + PROBE_IES)
    probe, _ = parse(RAW_80211, frame)
    assert probe is not None and probe.information_elements == PROBE_IES


def test_retry_flag_is_still_a_probe_request() -> None:
    probe, _ = parse(RAW_80211, management_frame(fc1=0x08))
    assert probe is not None


def test_empty_body_is_a_probe_request_with_no_elements() -> None:
    probe, _ = parse(RAW_80211, management_frame(body=b""))
    assert probe is not None and probe.information_elements == b""


@pytest.mark.parametrize(
    ("raw", "rssi_dbm"),
    [(256 - 1, -1), (256 - 120, -120), (256 - 121, None), (0, None), (15, None), (127, None), (128, None)],
)
def test_implausible_rssi_becomes_none(raw: int, rssi_dbm: int | None) -> None:
    probe, _ = parse(RADIOTAP, radiotap([SIGNAL_BIT], bytes([raw])) + PROBE)
    assert probe is not None and probe.rssi_dbm == rssi_dbm


@pytest.mark.parametrize(
    ("frequency_mhz", "channel"),
    [(2412, 1), (2472, 13), (2484, 14), (5180, 36), (5825, 165), (5955, 1), (5935, 2), (7115, 233)]
    + [(2400, None), (1, None)],
)
def test_channel_from_frequency(frequency_mhz: int, channel: int | None) -> None:
    assert channel_for_frequency(frequency_mhz) == channel
    probe, _ = parse(RADIOTAP, radiotap([CHANNEL_BIT], struct.pack("<HH", frequency_mhz, 0)) + PROBE)
    assert probe is not None and (probe.frequency_mhz, probe.channel) == (frequency_mhz, channel)


def test_zero_frequency_is_unknown() -> None:
    probe, _ = parse(RADIOTAP, radiotap([CHANNEL_BIT], struct.pack("<HH", 0, 0)) + PROBE)
    assert probe is not None and (probe.frequency_mhz, probe.channel) == (None, None)


def test_locally_administered_bit() -> None:
    assert is_locally_administered(bytes.fromhex("da a1 19 00 00 01"))
    assert is_locally_administered(bytes.fromhex("02 00 00 00 00 00"))
    assert not is_locally_administered(bytes.fromhex("3c 22 fb 00 00 01"))
    assert not is_locally_administered(bytes.fromhex("fd 00 00 00 00 00"))


# ------------------------------------------------------------------ what is skipped, and why


@pytest.mark.parametrize(
    ("fc0", "fc1"),
    [(0x80, 0x00), (0x50, 0x00), (0x08, 0x01), (0x88, 0x02), (0xD4, 0x00), (0xB4, 0x00), (0x40, 0x40), (0x41, 0x00)],
    ids=["beacon", "probe-response", "data", "qos-data", "ack", "rts", "protected-probe", "version-1"],
)
def test_everything_but_a_probe_request_is_skipped(fc0: int, fc1: int) -> None:
    frame = management_frame(fc0=fc0, fc1=fc1)
    assert skipped_for(RAW_80211, frame) == "not_probe_request"
    assert skipped_for(RADIOTAP, radiotap([0], b"") + frame) == "not_probe_request"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x00\x00\x08", "truncated"),  # shorter than a radiotap header
        (radiotap([0], b"", it_len=7) + PROBE, "bad_radiotap"),  # it_len below the minimum
        (radiotap([0], b"", it_len=200) + PROBE, "bad_radiotap"),  # it_len beyond the frame
        (radiotap([0], b"", version=1) + PROBE, "bad_radiotap"),
        (radiotap([EXT, EXT], b"", it_len=12) + PROBE, "bad_radiotap"),  # presence words run past it_len
        (radiotap([TSFT_BIT | SIGNAL_BIT], b"\x00" * 4, it_len=12) + PROBE, "bad_radiotap"),  # fields past it_len
        (radiotap([0], b"") + PROBE[:1], "truncated"),  # no room for the frame control
        (radiotap([0], b"") + PROBE[:23], "truncated"),  # management header cut
        (radiotap([FLAGS_BIT], bytes([FLAG_FCS_AT_END])) + PROBE[:26], "truncated"),  # header + FCS do not fit
    ],
    ids=[
        "short-radiotap",
        "it_len-too-short",
        "it_len-beyond-frame",
        "radiotap-version",
        "presence-chain-past-it_len",
        "fields-past-it_len",
        "no-frame-control",
        "header-cut",
        "fcs-overlaps-header",
    ],
)
def test_malformed_radiotap_frames_are_counted_by_reason(frame: bytes, reason: str) -> None:
    assert skipped_for(RADIOTAP, frame) == reason


def test_raw_80211_too_short() -> None:
    assert skipped_for(RAW_80211, b"\x40") == "truncated"
    assert skipped_for(RAW_80211, PROBE[:20]) == "truncated"


def test_unsupported_linktype() -> None:
    assert skipped_for(1, PROBE) == "unsupported_linktype"


def test_random_bytes_never_raise_and_every_frame_is_accounted_for(caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(20221122)
    valid = radiotap([FLAGS_BIT | CHANNEL_BIT | SIGNAL_BIT], b"\x10\x00" + CHANNEL_6 + b"\xc4") + PROBE + b"FCS!"
    frames: list[tuple[int, bytes]] = []
    for _ in range(3000):
        frames.append((rng.choice([RADIOTAP, RAW_80211, 1]), rng.randbytes(rng.randrange(0, 120))))
    for _ in range(3000):  # mutations of a valid frame reach the deeper branches
        mutated = bytearray(valid[: rng.randrange(0, len(valid) + 1)])
        for _ in range(rng.randrange(1, 4)):
            if mutated:
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        frames.append((RADIOTAP, bytes(mutated)))
    stats = SkipStats()
    with caplog.at_level(logging.DEBUG):
        probes = [probe for linktype, frame in frames if (probe := parse_frame(0.0, linktype, frame, stats))]
    assert len(probes) + sum(stats.as_dict().values()) == len(frames)
    assert len(probes) > 100 and stats.not_probe_request > 100 and stats.bad_radiotap > 100
    for probe in probes:
        assert len(probe.source_mac) == 6
        assert probe.rssi_dbm is None or -120 <= probe.rssi_dbm <= -1
        assert 0 <= probe.sequence_number < 4096  # type: ignore[operator]
    assert caplog.records == []  # frames carry raw MACs: the parser must never log


# ------------------------------------------------------------------ real captures vs tshark

BRNO = [
    "2022-11-22_position_1",
    "2023-02-21_position_1",
    "2024-02-29_position_1",
    "2024-02-29_position_2",
    "2024-03-14_position_1",
    "2024-03-14_position_2",
    "2024-03-23_position_1",
    "2024-03-23_position_2",
]
POLIMI = ["OppoFindX3Neo-A", "iPhone11-B", "iPhone11-C", "iPhone12-M", "iPhone7-F", "iPhoneXR-A"]
CROSS_CHECKED = (
    [f"wifi/brno/{day}.pcap" for day in BRNO]
    + [f"wifi/polimi/{phone}_anonymized.pcap" for phone in POLIMI]
    + [
        "wifi/aircrack/aircrack_test1_mixed_radiotap.pcap",
        "wifi/aircrack/aircrack_pmkid-not-recognized_mixed_no_radiotap.cap",
    ]
)


def probes_in(path: Path) -> tuple[list[ProbeRequest], SkipStats]:
    stats = SkipStats()
    probes = [probe for packet in open_capture(path) if (probe := parse_frame(*packet, stats))]
    return probes, stats


def _first_int(field: str) -> int | None:
    """tshark joins repeated fields (one antenna signal per radiotap namespace) with commas."""
    return int(field.split(",")[0]) if field else None


def plausible(rssi_dbm: int | None) -> int | None:
    return rssi_dbm if rssi_dbm is not None and -120 <= rssi_dbm <= -1 else None


def tshark_probe_fields(path: Path) -> list[tuple[str, int | None, int, int | None]]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: cannot cross-check the parser")
    fields = ["wlan.sa", "radiotap.dbm_antsignal", "wlan.seq", "radiotap.channel.freq"]
    command = ["tshark", "-r", str(path), "-Y", "wlan.fc.type_subtype==4", "-T", "fields"]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    rows = []
    for line in output.splitlines():
        source, signal, sequence, frequency = line.split("\t")
        rows.append((source, _first_int(signal), int(sequence), _first_int(frequency)))
    return rows


@pytest.mark.parametrize("relpath", CROSS_CHECKED)
def test_every_probe_request_matches_tshark(relpath: str) -> None:
    path = require_real_data(relpath)
    expected = [
        (source, plausible(rssi), sequence, frequency, channel_for_frequency(frequency))
        for source, rssi, sequence, frequency in tshark_probe_fields(path)
    ]
    probes, _ = probes_in(path)
    got = [(p.source_mac.hex(":"), p.rssi_dbm, p.sequence_number, p.frequency_mhz, p.channel) for p in probes]
    assert len(got) == len(expected)
    mismatches = [index for index, (a, b) in enumerate(zip(got, expected)) if a != b]
    assert mismatches == [], f"{len(mismatches)} probe requests differ from tshark, first at index {mismatches[0]}"


@pytest.mark.parametrize("relpath", CROSS_CHECKED)
def test_information_elements_end_exactly_at_the_frame_end(relpath: str) -> None:
    """A TLV chain that overruns would mean the FCS (Polimi, aircrack) was not stripped."""
    probes, _ = probes_in(require_real_data(relpath))
    for probe in probes:
        elements, position = probe.information_elements, 0
        while position + 2 <= len(elements):
            position += 2 + elements[position + 1]
        assert position == len(elements)


def test_brno_has_exactly_25447_probe_requests_all_on_channel_2() -> None:
    probes, stats = probes_in(require_real_data("wifi/brno/2022-11-22_position_1.pcap"))
    assert len(probes) == 25_447
    assert stats == SkipStats()
    assert {probe.channel for probe in probes} == {2}
    assert all(probe.rssi_dbm is not None for probe in probes)
    randomised_share = sum(is_locally_administered(probe.source_mac) for probe in probes) / len(probes)
    assert 0.6 <= randomised_share <= 0.95  # the dataset README's range


def test_aircrack_raw_80211_probe_requests_have_no_rssi() -> None:
    probes, stats = probes_in(require_real_data("wifi/aircrack/aircrack_pmkid-not-recognized_mixed_no_radiotap.cap"))
    assert len(probes) == 128
    assert stats.not_probe_request == 20_056 - 128
    assert all(probe.rssi_dbm is None and probe.frequency_mhz is None for probe in probes)


def test_aircrack_radiotap_mixed_traffic() -> None:
    probes, stats = probes_in(require_real_data("wifi/aircrack/aircrack_test1_mixed_radiotap.pcap"))
    assert len(probes) == 5
    assert stats.not_probe_request == 192 - 5


@pytest.mark.parametrize("phone", POLIMI)
def test_polimi_captures_parse_on_three_channels(phone: str) -> None:
    probes, stats = probes_in(require_real_data(f"wifi/polimi/{phone}_anonymized.pcap"))
    assert stats == SkipStats()
    assert {probe.channel for probe in probes} == {1, 6, 11}
