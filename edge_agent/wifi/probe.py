"""Probe-request parser for radiotap (link type 127) and raw 802.11 (105) frames.

Scapy dissects ~800 frames/s; the edge path needs >= 100,000 frames/s on one
core, so this parser reads only the bytes it needs with precompiled structs.
Frames that are not probe requests are rejected on the 802.11 frame-control
byte before any other work, because most traffic on a busy channel is not.

It never raises on bad input: every reason a frame is skipped is counted in
:class:`SkipStats`, which the agent reports. Frames carry raw MAC addresses,
so nothing here logs, and nothing puts frame bytes into a message.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from typing import NamedTuple

LINKTYPE_IEEE802_11 = 105
LINKTYPE_IEEE802_11_RADIOTAP = 127

#: Frame-control byte 0 of a probe request: protocol version 0, type 0 (management), subtype 4.
_PROBE_REQUEST_FC0 = 0x40
#: Frame-control byte 1 flags that rule a frame out: Protected Frame.
_FC1_PROTECTED = 0x40
#: Frame-control byte 1 flag +HTC/Order: a management frame then carries 4 bytes of HT Control.
_FC1_ORDER = 0x80
_MANAGEMENT_HEADER_BYTES = 24
_HT_CONTROL_BYTES = 4
_FCS_BYTES = 4

_RADIOTAP_HEADER_BYTES = 8
_RADIOTAP_EXT = 0x8000_0000
_RADIOTAP_FLAG_FCS_AT_END = 0x10
_RADIOTAP_FLAG_BAD_FCS = 0x40
#: A signed dBm byte is plausible in -120..-1 dBm, i.e. raw unsigned 136..255.
_RSSI_RAW_MIN = 256 - 120

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_new_tuple = tuple.__new__


class ProbeRequest(NamedTuple):
    """The fields of one probe request the edge path needs; ``source_mac`` is raw."""

    timestamp_s: float
    source_mac: bytes
    rssi_dbm: int | None
    frequency_mhz: int | None
    channel: int | None
    sequence_number: int | None
    information_elements: bytes


@dataclass(slots=True)
class SkipStats:
    """Why frames were not returned as probe requests; the agent reports these."""

    not_probe_request: int = 0
    truncated: int = 0
    bad_fcs: int = 0
    bad_radiotap: int = 0
    unsupported_linktype: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _RadiotapLayout(NamedTuple):
    """Offsets, relative to the end of the presence words, of the first-namespace fields we read.

    -1 means absent. ``end`` is where the last of fields 0..5 ends, which must
    lie inside ``it_len``.
    """

    flags: int
    channel: int
    antenna_signal: int
    end: int


def _radiotap_layout(data_start: int, present: int) -> _RadiotapLayout:
    """Place TSFT, Flags, Rate, Channel, FHSS and dBm antenna signal by radiotap alignment rules.

    Alignment is relative to the start of the radiotap header, so it depends on
    where the data starts (after 1, 2, 3... presence words), not only on the bits.
    """
    position = data_start
    flags = channel = antenna_signal = -1
    if present & 0x01:  # TSFT: u64, 8-byte aligned
        position = (position + 7) & ~7
        position += 8
    if present & 0x02:  # Flags: u8
        flags = position
        position += 1
    if present & 0x04:  # Rate: u8
        position += 1
    if present & 0x08:  # Channel: u16 frequency, u16 flags, 2-byte aligned
        position = (position + 1) & ~1
        channel = position
        position += 4
    if present & 0x10:  # FHSS: u8 hop set, u8 hop pattern
        position += 2
    if present & 0x20:  # dBm antenna signal: s8
        antenna_signal = position
        position += 1

    def relative(offset: int) -> int:
        return offset - data_start if offset >= 0 else -1

    return _RadiotapLayout(relative(flags), relative(channel), relative(antenna_signal), position - data_start)


#: Layouts indexed by ``(data_start % 8 == 0) << 6 | present & 0x3f``: the data
#: of a radiotap header starts at 4 + 4 * words, i.e. at 0 or 4 modulo 8.
_LAYOUTS: tuple[_RadiotapLayout, ...] = tuple(
    _radiotap_layout(data_start, low_bits) for data_start in (4, 8) for low_bits in range(64)
)


def _channel_table() -> dict[int, int]:
    """Centre frequency in MHz -> IEEE channel number for 2.4, 5 and 6 GHz."""
    table = {2407 + 5 * number: number for number in range(1, 14)}
    table[2484] = 14
    table.update({5000 + 5 * number: number for number in range(1, 178)})
    table.update({5950 + 5 * number: number for number in range(1, 234)})
    table[5935] = 2  # 6 GHz channel 2 sits below the 5950 MHz base
    return table


_CHANNEL_BY_MHZ = _channel_table()


def channel_for_frequency(frequency_mhz: int | None) -> int | None:
    """IEEE channel number of a 2.4/5/6 GHz centre frequency; ``None`` if it is none of those."""
    return _CHANNEL_BY_MHZ.get(frequency_mhz) if frequency_mhz is not None else None


def is_locally_administered(mac: bytes) -> bool:
    """True for a locally administered MAC, which is what phones' randomised MACs are."""
    return bool(mac[0] & 0x02)


def parse_frame(timestamp_s: float, linktype: int, frame: bytes, stats: SkipStats | None = None) -> ProbeRequest | None:
    """Return the probe request in ``frame``, or ``None`` (counted in ``stats``) for anything else.

    One function on purpose: this is the hot loop of the edge path, and each
    Python call costs as much as the radiotap parsing itself.
    """
    frame_size = len(frame)
    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        if frame_size < _RADIOTAP_HEADER_BYTES:
            if stats is not None:
                stats.truncated += 1
            return None
        start = frame[2] | frame[3] << 8  # it_len: the 802.11 frame starts right after the radiotap header
        if start < _RADIOTAP_HEADER_BYTES or start > frame_size or frame[0] != 0:
            if stats is not None:
                stats.bad_radiotap += 1
            return None
    elif linktype == LINKTYPE_IEEE802_11:
        start = 0
    else:
        if stats is not None:
            stats.unsupported_linktype += 1
        return None

    if start + 2 > frame_size or frame[start] != _PROBE_REQUEST_FC0 or frame[start + 1] & _FC1_PROTECTED:
        if stats is not None:
            if start + 2 > frame_size:
                stats.truncated += 1
            else:
                stats.not_probe_request += 1
        return None

    end = frame_size
    frequency_mhz = rssi_dbm = channel = None
    if start:  # radiotap: walk the presence words, then read fields 0..5 of the first namespace
        present = _U32.unpack_from(frame, 4)[0]
        data_start = _RADIOTAP_HEADER_BYTES
        word = present
        while word & _RADIOTAP_EXT:
            if data_start + 4 > start:
                if stats is not None:
                    stats.bad_radiotap += 1
                return None
            word = _U32.unpack_from(frame, data_start)[0]
            data_start += 4
        flags_at, channel_at, signal_at, fields_end = _LAYOUTS[(data_start & 4 == 0) << 6 | present & 0x3F]
        if data_start + fields_end > start:
            if stats is not None:
                stats.bad_radiotap += 1
            return None
        if flags_at >= 0:
            flags = frame[data_start + flags_at]
            if flags & _RADIOTAP_FLAG_BAD_FCS:
                if stats is not None:
                    stats.bad_fcs += 1
                return None
            if flags & _RADIOTAP_FLAG_FCS_AT_END:
                end -= _FCS_BYTES
        if channel_at >= 0:
            frequency_mhz = _U16.unpack_from(frame, data_start + channel_at)[0] or None  # 0 MHz: not reported
            channel = _CHANNEL_BY_MHZ.get(frequency_mhz)
        if signal_at >= 0:
            raw_signal = frame[data_start + signal_at]
            if raw_signal >= _RSSI_RAW_MIN:
                rssi_dbm = raw_signal - 256

    body_start = start + _MANAGEMENT_HEADER_BYTES
    if frame[start + 1] & _FC1_ORDER:
        body_start += _HT_CONTROL_BYTES
    if body_start > end:
        if stats is not None:
            stats.truncated += 1
        return None
    # tuple.__new__ skips the NamedTuple's Python-level __new__: measurably faster per frame.
    return _new_tuple(
        ProbeRequest,
        (
            timestamp_s,
            frame[start + 10 : start + 16],  # address 2: the transmitter, i.e. the phone
            rssi_dbm,
            frequency_mhz,
            channel,
            (frame[start + 22] | frame[start + 23] << 8) >> 4,
            frame[body_start:end],
        ),
    )
