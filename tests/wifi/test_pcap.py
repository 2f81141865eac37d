"""The capture reader against hand-built pcap/pcapng files and the real captures."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from edge_agent.wifi.pcap import CaptureFormatError, open_capture
from tests.realdata import require_real_data
from tests.wifi.builders import (
    enhanced_packet,
    interface_description,
    management_frame,
    obsolete_packet,
    pcap_bytes,
    pcapng_block,
    section_header,
    simple_packet,
    write,
)

FRAMES = [management_frame(sequence_number=n, body=bytes([n]) * n) for n in range(1, 4)]
TIMESTAMPS_S = [1_669_111_450.707757, 1_669_111_451.000001, 1_669_111_452.5]


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_classic_pcap_round_trips_in_both_byte_orders_and_resolutions(
    tmp_path: Path, byte_order: str, nanoseconds: bool
) -> None:
    path = write(tmp_path / "c.pcap", pcap_bytes(zip(TIMESTAMPS_S, FRAMES), 127, byte_order, nanoseconds))
    with open_capture(path) as reader:
        packets = list(reader)
    assert reader.format == "pcap" and reader.linktype == 127
    assert [frame for _, _, frame in packets] == FRAMES
    assert {linktype for _, linktype, _ in packets} == {127}
    assert [timestamp_s for timestamp_s, _, _ in packets] == pytest.approx(TIMESTAMPS_S, abs=1e-6)
    assert (reader.packets, reader.truncated_records, reader.malformed_records) == (3, 0, 0)


def test_nanosecond_pcap_keeps_sub_microsecond_fraction(tmp_path: Path) -> None:
    header = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 105)
    record = struct.pack("<IIII", 10, 123_456_789, 2, 2) + b"\x40\x00"
    ((timestamp_s, _, _),) = list(open_capture(write(tmp_path / "ns.pcap", header + record)))
    assert timestamp_s == pytest.approx(10.123456789, abs=1e-9)


@pytest.mark.parametrize("cut_bytes", [1, 10, 16 + len(FRAMES[-1]) - 1])
def test_truncated_tail_is_tolerated_and_counted(tmp_path: Path, cut_bytes: int) -> None:
    data = pcap_bytes(zip(TIMESTAMPS_S, FRAMES), 127)
    path = write(tmp_path / "cut.pcap", data[:-cut_bytes])
    reader = open_capture(path)
    assert [frame for _, _, frame in reader] == FRAMES[:2]
    assert (reader.packets, reader.truncated_records) == (2, 1)


def test_garbage_record_length_ends_iteration_as_malformed(tmp_path: Path) -> None:
    garbage = struct.pack("<IIII", 1, 2, 0x7FFF_FFFF, 0x7FFF_FFFF) + b"\x00" * 64
    reader = open_capture(write(tmp_path / "g.pcap", pcap_bytes(zip(TIMESTAMPS_S, FRAMES), 127) + garbage))
    assert len(list(reader)) == 3
    assert (reader.malformed_records, reader.truncated_records) == (1, 0)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is not a capture file at all", b"\xd4\xc3\xb2\xa1\x02\x00", b"\x0a\x0d\x0d\x0a" + b"\x00" * 40],
    ids=["empty", "text", "pcap-header-cut", "pcapng-without-byte-order-magic"],
)
def test_not_a_capture_raises_format_error(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(CaptureFormatError, match="bad.bin"):
        open_capture(write(tmp_path / "bad.bin", content))


def test_iterating_again_restarts_and_resets_counters(tmp_path: Path) -> None:
    reader = open_capture(write(tmp_path / "c.pcap", pcap_bytes(zip(TIMESTAMPS_S, FRAMES), 127)))
    assert list(reader) == list(reader)
    assert reader.packets == 3


def test_frames_stay_valid_after_close(tmp_path: Path) -> None:
    with open_capture(write(tmp_path / "c.pcap", pcap_bytes(zip(TIMESTAMPS_S, FRAMES), 127))) as reader:
        frames = [frame for _, _, frame in reader]
    assert frames == FRAMES


# ------------------------------------------------------------------ pcapng


def _two_interface_capture(byte_order: str) -> bytes:
    """Radiotap on interface 0 (default microseconds), raw 802.11 on interface 1 (ns, +100 s offset)."""
    return b"".join(
        [
            section_header(byte_order),
            interface_description(127, byte_order),
            interface_description(105, byte_order, tsresol=9, tsoffset_s=100),
            enhanced_packet(0, 1_500_000, FRAMES[0], byte_order),
            pcapng_block(4, b"\x00\x00\x00\x00", byte_order),  # name resolution block: skipped
            enhanced_packet(1, 2_000_000_123, FRAMES[1], byte_order),
            pcapng_block(0x0BAD, b"custom", byte_order),  # unknown block type: skipped
            simple_packet(FRAMES[2], byte_order),
            obsolete_packet(0, 3_000_000, FRAMES[0], byte_order),
        ]
    )


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_pcapng_two_interfaces_with_different_linktypes_and_resolutions(tmp_path: Path, byte_order: str) -> None:
    reader = open_capture(write(tmp_path / "two.pcapng", _two_interface_capture(byte_order)))
    packets = list(reader)
    assert reader.format == "pcapng"
    assert [(linktype, frame) for _, linktype, frame in packets] == [
        (127, FRAMES[0]),
        (105, FRAMES[1]),
        (127, FRAMES[2]),  # simple packet: interface 0
        (127, FRAMES[0]),
    ]
    timestamps_s = [timestamp_s for timestamp_s, _, _ in packets]
    # The simple packet block has no timestamp of its own and inherits the previous one.
    assert timestamps_s == pytest.approx([1.5, 102.000000123, 102.000000123, 3.0], abs=1e-9)
    assert (reader.packets, reader.truncated_records, reader.malformed_records) == (4, 0, 0)


def test_pcapng_binary_timestamp_resolution(tmp_path: Path) -> None:
    binary_units = 0x80 | 10  # 2^-10 s per unit
    capture = section_header() + interface_description(127, tsresol=binary_units) + enhanced_packet(0, 3584, FRAMES[0])
    ((timestamp_s, _, _),) = list(open_capture(write(tmp_path / "bin.pcapng", capture)))
    assert timestamp_s == 3.5


def test_pcapng_sections_may_switch_byte_order_and_reset_interfaces(tmp_path: Path) -> None:
    capture = (
        section_header("<")
        + interface_description(127, "<")
        + enhanced_packet(0, 1_000_000, FRAMES[0], "<")
        + section_header(">")
        + interface_description(105, ">")
        + enhanced_packet(0, 2_000_000, FRAMES[1], ">")
        + enhanced_packet(1, 3_000_000, FRAMES[2], ">")  # the second section defines one interface only
    )
    reader = open_capture(write(tmp_path / "sections.pcapng", capture))
    assert [(t, lt, f) for t, lt, f in reader] == [(1.0, 127, FRAMES[0]), (2.0, 105, FRAMES[1])]
    assert reader.malformed_records == 1


def test_pcapng_packet_longer_than_its_block_is_malformed_and_skipped(tmp_path: Path) -> None:
    liar = bytearray(enhanced_packet(0, 1_000_000, FRAMES[0]))
    struct.pack_into("<I", liar, 20, 10_000)  # captured length far beyond the block
    capture = section_header() + interface_description(127) + bytes(liar) + enhanced_packet(0, 2_000_000, FRAMES[1])
    reader = open_capture(write(tmp_path / "liar.pcapng", capture))
    assert [frame for _, _, frame in reader] == [FRAMES[1]]
    assert reader.malformed_records == 1


def test_pcapng_truncated_tail_is_tolerated_and_counted(tmp_path: Path) -> None:
    capture = _two_interface_capture("<")
    reader = open_capture(write(tmp_path / "cut.pcapng", capture[:-7]))
    assert len(list(reader)) == 3
    assert (reader.packets, reader.truncated_records, reader.malformed_records) == (3, 1, 0)


def test_pcapng_block_length_not_multiple_of_four_stops_as_malformed(tmp_path: Path) -> None:
    capture = section_header() + interface_description(127) + struct.pack("<II", 6, 13) + b"\x00" * 16
    reader = open_capture(write(tmp_path / "odd.pcapng", capture))
    assert list(reader) == []
    assert reader.malformed_records == 1


# ------------------------------------------------------------------ real captures


def _tshark_epochs(path: Path) -> list[float]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: cannot cross-check timestamps")
    result = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [float(line) for line in result.stdout.split()]


@pytest.mark.parametrize(
    "relpath",
    ["wifi/brno/2022-11-22_position_1.pcap", "wifi/aircrack/aircrack_test1_mixed_radiotap.pcap"],
)
def test_real_capture_packets_and_timestamps_match_tshark(relpath: str) -> None:
    path = require_real_data(relpath)
    reader = open_capture(path)
    timestamps_s = [timestamp_s for timestamp_s, _, _ in reader]
    assert timestamps_s == pytest.approx(_tshark_epochs(path), abs=1e-6)
    assert (reader.truncated_records, reader.malformed_records) == (0, 0)


def test_brno_capture_has_exactly_its_packets() -> None:
    reader = open_capture(require_real_data("wifi/brno/2022-11-22_position_1.pcap"))
    assert {linktype for _, linktype, _ in reader} == {127}
    assert reader.packets == 25_447


def test_real_aircrack_capture_is_cut_off_mid_packet() -> None:
    """The raw 802.11 test capture ends inside its 20,057th record, as tshark also reports."""
    reader = open_capture(require_real_data("wifi/aircrack/aircrack_pmkid-not-recognized_mixed_no_radiotap.cap"))
    assert {linktype for _, linktype, _ in reader} == {105}
    assert (reader.packets, reader.truncated_records, reader.malformed_records) == (20_056, 1, 0)
