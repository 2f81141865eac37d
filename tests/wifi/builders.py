"""Build synthetic 802.11 frames and pcap/pcapng files byte by byte with ``struct``.

The field layouts are written out by hand (padding included) rather than
computed, so the tests check the parser against the radiotap and pcapng
specifications instead of against a second copy of its own logic.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterable

BROADCAST = b"\xff" * 6
PHONE_MAC = bytes.fromhex("daa119000001")
#: SSID "" (wildcard), Supported Rates 1, 2, 5.5, 11 Mbit/s.
PROBE_IES = b"\x00\x00" + b"\x01\x04\x02\x04\x0b\x16"


def management_frame(
    fc0: int = 0x40,
    fc1: int = 0x00,
    source_mac: bytes = PHONE_MAC,
    sequence_number: int = 0x5A5,
    body: bytes = PROBE_IES,
) -> bytes:
    """An 802.11 management header (24 bytes) plus body; fc0 0x40 = probe request."""
    sequence_control = struct.pack("<H", (sequence_number << 4) | 0x3)  # fragment 3 must not leak in
    return bytes([fc0, fc1]) + b"\x00\x00" + BROADCAST + source_mac + BROADCAST + sequence_control + body


def radiotap(present_words: list[int], fields: bytes, it_len: int | None = None, version: int = 0) -> bytes:
    """A radiotap header; ``fields`` must already contain the alignment padding."""
    header_bytes = 4 + 4 * len(present_words) + len(fields)
    words = b"".join(struct.pack("<I", word) for word in present_words)
    return struct.pack("<BBH", version, 0, header_bytes if it_len is None else it_len) + words + fields


def pcap_bytes(
    packets: Iterable[tuple[float, bytes]],
    linktype: int,
    byte_order: str = "<",
    nanoseconds: bool = False,
) -> bytes:
    """A classic pcap file; timestamps are split into seconds and micro/nanoseconds."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    ticks_per_s = 1_000_000_000 if nanoseconds else 1_000_000
    out = [struct.pack(byte_order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for timestamp_s, frame in packets:
        seconds = int(timestamp_s)
        ticks = round((timestamp_s - seconds) * ticks_per_s)
        out.append(struct.pack(byte_order + "IIII", seconds, ticks, len(frame), len(frame)) + frame)
    return b"".join(out)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ pcapng blocks


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def pcapng_block(block_type: int, body: bytes, byte_order: str = "<") -> bytes:
    total = 12 + len(_pad4(body))
    return struct.pack(byte_order + "II", block_type, total) + _pad4(body) + struct.pack(byte_order + "I", total)


def pcapng_option(code: int, value: bytes, byte_order: str = "<") -> bytes:
    return struct.pack(byte_order + "HH", code, len(value)) + _pad4(value)


def section_header(byte_order: str = "<") -> bytes:
    body = struct.pack(byte_order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return pcapng_block(0x0A0D0D0A, body, byte_order)


def interface_description(
    linktype: int,
    byte_order: str = "<",
    tsresol: int | None = None,
    tsoffset_s: int | None = None,
    snaplen: int = 0,
) -> bytes:
    options = b""
    if tsresol is not None:
        options += pcapng_option(9, bytes([tsresol]), byte_order)
    if tsoffset_s is not None:
        options += pcapng_option(14, struct.pack(byte_order + "q", tsoffset_s), byte_order)
    if options:
        options += pcapng_option(0, b"", byte_order)
    return pcapng_block(1, struct.pack(byte_order + "HHI", linktype, 0, snaplen) + options, byte_order)


def enhanced_packet(interface_id: int, timestamp_units: int, frame: bytes, byte_order: str = "<") -> bytes:
    high, low = timestamp_units >> 32, timestamp_units & 0xFFFF_FFFF
    body = struct.pack(byte_order + "IIIII", interface_id, high, low, len(frame), len(frame)) + frame
    return pcapng_block(6, body, byte_order)


def simple_packet(frame: bytes, byte_order: str = "<") -> bytes:
    return pcapng_block(3, struct.pack(byte_order + "I", len(frame)) + frame, byte_order)


def obsolete_packet(interface_id: int, timestamp_units: int, frame: bytes, byte_order: str = "<") -> bytes:
    high, low = timestamp_units >> 32, timestamp_units & 0xFFFF_FFFF
    body = struct.pack(byte_order + "HHIIII", interface_id, 0, high, low, len(frame), len(frame)) + frame
    return pcapng_block(2, body, byte_order)
