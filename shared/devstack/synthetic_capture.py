"""A small synthetic probe-request capture for when the real data is absent.

The demo replays a real capture from ``../shared/data`` when it can. Without
it, this writes a plausible stand-in: phones that walk by or stay for a
while, some rotating randomised MACs every few minutes, probing every few
seconds with a falling and rising signal. It is a radiotap pcap, so it goes
through exactly the same parser as a real capture.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable
from pathlib import Path

LINKTYPE_RADIOTAP = 127
# Radiotap: version 0, present = Flags(1) | Channel(3) | dBm antenna signal(5).
_RADIOTAP_PRESENT = (1 << 1) | (1 << 3) | (1 << 5)
_CHANNEL_6_MHZ = 2437
_CHANNEL_FLAGS_2GHZ_CCK = 0x00A0
_BROADCAST = b"\xff" * 6
_IES = bytes([0, 0, 1, 4, 0x82, 0x84, 0x8B, 0x96, 50, 4, 0x0C, 0x12, 0x18, 0x24])


def probe_request_frame(mac: bytes, sequence_number: int, rssi_dbm: int, information_elements: bytes = _IES) -> bytes:
    """Radiotap header + 802.11 probe request (by default a wildcard SSID and 802.11b rates).

    ``information_elements`` lets a caller give phone models different capabilities (the store simulator).
    """
    radiotap = struct.pack(
        "<BBHIBxHHb", 0, 0, 15, _RADIOTAP_PRESENT, 0, _CHANNEL_6_MHZ, _CHANNEL_FLAGS_2GHZ_CCK, rssi_dbm
    )
    header = b"\x40\x00\x00\x00" + _BROADCAST + mac + _BROADCAST + struct.pack("<H", (sequence_number & 0xFFF) << 4)
    return radiotap + header + information_elements


def _random_mac(rng: random.Random, randomized: bool) -> bytes:
    first = rng.randrange(256) & 0xFC | (0x02 if randomized else 0x00)
    return bytes([first]) + rng.randbytes(5)


def write_synthetic_capture(path: Path, start_s: float, duration_s: int = 3_600, phones: int = 60, seed: int = 7) -> int:
    """Write the capture; returns the number of probe requests in it."""
    rng = random.Random(seed)
    packets: list[tuple[float, bytes]] = []
    for _ in range(phones):
        arrive_s = start_s + rng.uniform(0, duration_s * 0.8)
        stay_s = rng.choice([rng.uniform(20, 120), rng.uniform(300, 1_800)])
        randomized = rng.random() < 0.7
        mac, rotate_at_s = _random_mac(rng, randomized), arrive_s + rng.uniform(120, 600)
        sequence_number, t = rng.randrange(4_096), arrive_s
        while t < min(arrive_s + stay_s, start_s + duration_s):
            if randomized and t >= rotate_at_s:
                mac, rotate_at_s = _random_mac(rng, True), t + rng.uniform(120, 600)
            closeness = 1 - abs((t - arrive_s) / stay_s - 0.5) * 2
            rssi_dbm = int(-88 + 40 * closeness + rng.gauss(0, 3))
            packets.append((t, probe_request_frame(mac, sequence_number, max(-100, min(-20, rssi_dbm)))))
            sequence_number += 1
            t += rng.expovariate(1 / 8)
    packets.sort(key=lambda packet: packet[0])
    return write_radiotap_pcap(path, packets)


def write_radiotap_pcap(path: Path, packets: Iterable[tuple[float, bytes]]) -> int:
    """A classic pcap of radiotap frames (in the order given); returns how many were written."""
    written = 0
    with open(path, "wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65_535, LINKTYPE_RADIOTAP))
        for timestamp_s, frame in packets:
            seconds = int(timestamp_s)
            micros = int((timestamp_s - seconds) * 1_000_000)
            handle.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
            written += 1
    return written
