"""Capture file reader: classic pcap and pcapng, as fast as plain Python allows.

The edge path replays captures at hundreds of thousands of frames per second,
so this reader maps the file into memory and walks it with precompiled
``struct.Struct`` objects; per packet it creates only the yielded
``(timestamp_s, linktype, frame)`` tuple and the frame's bytes.

It is strict about the file header (not pcap/pcapng -> :class:`CaptureFormatError`)
and lenient about the tail: a capture cut off mid-record, as a sniffer killed
by a power cut leaves it, ends iteration quietly and is counted in
``truncated_records``. A record that cannot be interpreted (an impossible
length, a packet block naming an undefined interface) is counted in
``malformed_records``; classic pcap cannot resynchronise after one, so
iteration stops there, while pcapng skips the block and carries on.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from types import TracebackType
from typing import Iterator, NamedTuple

#: Largest packet libpcap accepts in a classic pcap record (its MAXIMUM_SNAPLEN).
MAX_RECORD_BYTES = 262_144
#: libpcap keeps the FCS-length and reserved bits out of the link type this way.
_LINKTYPE_MASK = 0x03FF_FFFF

_PCAP_MAGICS: dict[bytes, tuple[str, float]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAP_FILE_HEADER_BYTES = 24
_PCAP_RECORD_HEADER_BYTES = 16

_PCAPNG_SHB_TYPE = b"\x0a\x0d\x0d\x0a"  # the same in both byte orders
_PCAPNG_IDB = 0x00000001
_PCAPNG_OPB = 0x00000002
_PCAPNG_SPB = 0x00000003
_PCAPNG_EPB = 0x00000006
_PCAPNG_BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_PCAPNG_MIN_SHB_BYTES = 28
_OPTION_END = 0
_OPTION_IF_TSRESOL = 9
_OPTION_IF_TSOFFSET = 14


class CaptureFormatError(ValueError):
    """The file does not start like a pcap or pcapng capture."""


class _Interface(NamedTuple):
    """What a pcapng packet block needs from its interface description."""

    linktype: int
    units_per_s: float
    offset_s: float
    snaplen: int


class _PcapngStructs:
    """The structs of one pcapng section; a section may switch byte order."""

    def __init__(self, byte_order: str) -> None:
        self.block_header = struct.Struct(byte_order + "II")
        self.u32 = struct.Struct(byte_order + "I")
        self.idb = struct.Struct(byte_order + "HHI")
        self.option_header = struct.Struct(byte_order + "HH")
        self.i64 = struct.Struct(byte_order + "q")
        self.epb = struct.Struct(byte_order + "IIIII")
        self.opb = struct.Struct(byte_order + "HHIIII")


class CaptureReader:
    """One capture file; iterate it for ``(timestamp_s, linktype, frame)`` tuples.

    ``format`` is ``"pcap"`` or ``"pcapng"``; ``linktype`` is the file's link
    type for classic pcap and ``None`` for pcapng, where each interface has its
    own. Counters describe the current (or last finished) pass over the file:
    ``packets`` yielded, ``truncated_records`` (0 or 1: the cut-off tail) and
    ``malformed_records``. Use as a context manager, or call :meth:`close`;
    frames already yielded stay valid after closing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.packets = 0
        self.truncated_records = 0
        self.malformed_records = 0
        with open(self.path, "rb") as file:
            try:
                self._data: mmap.mmap | bytes = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                self._data = b""
        try:
            self.format, self.linktype = self._detect_format()
        except CaptureFormatError:
            self.close()
            raise

    def _detect_format(self) -> tuple[str, int | None]:
        """Check the file header; classic pcap has one link type, pcapng one per interface."""
        head = self._data[:_PCAP_FILE_HEADER_BYTES]
        magic = head[:4]
        if magic in _PCAP_MAGICS:
            if len(head) < _PCAP_FILE_HEADER_BYTES:
                raise CaptureFormatError(f"{self.path}: pcap file header is cut off")
            byte_order, _ = _PCAP_MAGICS[magic]
            (network,) = struct.unpack_from(byte_order + "I", head, 20)
            return "pcap", network & _LINKTYPE_MASK
        if magic == _PCAPNG_SHB_TYPE:
            if len(self._data) < _PCAPNG_MIN_SHB_BYTES or self._data[8:12] not in _PCAPNG_BYTE_ORDER:
                raise CaptureFormatError(f"{self.path}: pcapng section header is cut off or has no byte-order magic")
            return "pcapng", None
        raise CaptureFormatError(f"{self.path}: not a pcap or pcapng capture (magic {magic.hex() or 'empty'})")

    def __iter__(self) -> Iterator[tuple[float, int, bytes]]:
        self.packets = self.truncated_records = self.malformed_records = 0
        return self._iter_pcap() if self.format == "pcap" else self._iter_pcapng()

    def _iter_pcap(self) -> Iterator[tuple[float, int, bytes]]:
        data = self._data
        size = len(data)
        byte_order, tick_s = _PCAP_MAGICS[data[:4]]
        unpack_record = struct.Struct(byte_order + "IIII").unpack_from
        linktype = self.linktype
        offset = _PCAP_FILE_HEADER_BYTES
        last_header = size - _PCAP_RECORD_HEADER_BYTES
        while offset <= last_header:
            seconds, fraction, captured_bytes, _ = unpack_record(data, offset)
            if captured_bytes > MAX_RECORD_BYTES:
                self.malformed_records += 1
                return
            start = offset + _PCAP_RECORD_HEADER_BYTES
            offset = start + captured_bytes
            if offset > size:
                self.truncated_records += 1
                return
            self.packets += 1
            yield seconds + fraction * tick_s, linktype, data[start:offset]
        if offset != size:
            self.truncated_records += 1

    def _iter_pcapng(self) -> Iterator[tuple[float, int, bytes]]:
        data = self._data
        size = len(data)
        offset = 0
        structs = _PcapngStructs("<")
        interfaces: list[_Interface] = []
        last_timestamp_s = 0.0
        while offset + 12 <= size:
            if data[offset : offset + 4] == _PCAPNG_SHB_TYPE:
                byte_order = _PCAPNG_BYTE_ORDER.get(data[offset + 8 : offset + 12])
                if byte_order is None:
                    self.malformed_records += 1
                    return
                structs = _PcapngStructs(byte_order)
                interfaces = []
            block_type, block_bytes = structs.block_header.unpack_from(data, offset)
            if block_bytes < 12 or block_bytes % 4:
                self.malformed_records += 1
                return
            end = offset + block_bytes
            if end > size:
                self.truncated_records += 1
                return
            if structs.u32.unpack_from(data, end - 4)[0] != block_bytes:
                self.malformed_records += 1
                return
            if block_type == _PCAPNG_EPB or block_type == _PCAPNG_OPB or block_type == _PCAPNG_SPB:
                packet = _pcapng_packet(data, offset, block_type, end, structs, interfaces, last_timestamp_s)
                if packet is None:
                    self.malformed_records += 1
                else:
                    last_timestamp_s = packet[0]
                    self.packets += 1
                    yield packet
            elif block_type == _PCAPNG_IDB:
                interface = _pcapng_interface(data, offset, end, structs)
                if interface is None:
                    self.malformed_records += 1
                else:
                    interfaces.append(interface)
            offset = end
        if offset != size:
            self.truncated_records += 1

    def close(self) -> None:
        """Unmap the file; iterating afterwards is an error."""
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _pcapng_packet(
    data: mmap.mmap | bytes,
    offset: int,
    block_type: int,
    end: int,
    structs: _PcapngStructs,
    interfaces: list[_Interface],
    last_timestamp_s: float,
) -> tuple[float, int, bytes] | None:
    """Decode an EPB, OPB or SPB; ``None`` when it contradicts itself or its interfaces.

    A simple packet block carries no timestamp: it inherits the previous
    packet's, which keeps downstream time windows monotonic.
    """
    body_end = end - 4
    if block_type == _PCAPNG_EPB:
        if offset + 28 > body_end:
            return None
        interface_id, high, low, captured_bytes, _ = structs.epb.unpack_from(data, offset + 8)
        start = offset + 28
    elif block_type == _PCAPNG_OPB:
        if offset + 28 > body_end:
            return None
        interface_id, _, high, low, captured_bytes, _ = structs.opb.unpack_from(data, offset + 8)
        start = offset + 28
    else:
        if offset + 12 > body_end or not interfaces:
            return None
        (original_bytes,) = structs.u32.unpack_from(data, offset + 8)
        start = offset + 12
        snaplen = interfaces[0].snaplen or original_bytes
        captured_bytes = min(original_bytes, snaplen, body_end - start)
        return last_timestamp_s, interfaces[0].linktype, data[start : start + captured_bytes]
    if interface_id >= len(interfaces) or start + captured_bytes > body_end:
        return None
    interface = interfaces[interface_id]
    timestamp_s = ((high << 32) | low) / interface.units_per_s + interface.offset_s
    return timestamp_s, interface.linktype, data[start : start + captured_bytes]


def _pcapng_interface(data: mmap.mmap | bytes, offset: int, end: int, structs: _PcapngStructs) -> _Interface | None:
    """Decode an IDB: link type, snap length and the options that shape timestamps."""
    body_end = end - 4
    if offset + 16 > body_end:
        return None
    linktype, _, snaplen = structs.idb.unpack_from(data, offset + 8)
    units_per_s = 1e6
    offset_s = 0.0
    position = offset + 16
    while position + 4 <= body_end:
        code, length = structs.option_header.unpack_from(data, position)
        value_start = position + 4
        if code == _OPTION_END or value_start + length > body_end:
            break
        if code == _OPTION_IF_TSRESOL and length >= 1:
            resolution = data[value_start]
            units_per_s = float(2 ** (resolution & 0x7F) if resolution & 0x80 else 10**resolution)
        elif code == _OPTION_IF_TSOFFSET and length >= 8:
            offset_s = float(structs.i64.unpack_from(data, value_start)[0])
        position = value_start + (length + 3) // 4 * 4
    return _Interface(linktype, units_per_s, offset_s, snaplen)


def open_capture(path: str | Path) -> CaptureReader:
    """Open a pcap or pcapng file; raises :class:`CaptureFormatError` if it is neither."""
    return CaptureReader(path)
