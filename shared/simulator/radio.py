"""What the store's sensors hear: exact sightings, or raw probe-request frames for the real edge path.

*Sightings* are what a sensor's edge would send with perfect de-randomisation:
each sensor names a phone's cluster after the first MAC *it* heard in the
visit, exactly like the edge linker, so two sensors disagree on cluster ids
and the collector has to join them through the MACs both heard.

*Frames* are radiotap probe requests: a short burst per tick with noisy RSSI,
per-model capability elements, MAC rotation and 802.11 sequence numbers, to be
parsed, pseudonymised and linked by the real edge code — so accuracy depends
on the real linker, as it would in a store.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterable
from typing import NamedTuple

from shared.devstack.synthetic_capture import LINKTYPE_RADIOTAP, probe_request_frame
from shared.protocol import SightingRow
from shared.simulator.layout import StoreLayout
from shared.simulator.people import Person, Phone

Frame = tuple[float, int, bytes]
#: Probe requests per tick and how far they spread within the tick's window, seconds.
BURST_FRAMES = 2
BURST_SPREAD_S = 2.0


class EpochSighting(NamedTuple):
    """A sighting row and the key epoch it belongs to (batches are per epoch)."""

    key_epoch: int
    row: SightingRow


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


def mac_index(phone: Phone, t: int) -> int:
    """Which of its MACs the phone uses at ``t`` (rotation has a per-phone phase)."""
    if phone.rotate_every_s is None:
        return 0
    phase_s = int.from_bytes(_digest("phase", phone.phone_id)[:4], "big") % phone.rotate_every_s
    return (t + phase_s) // phone.rotate_every_s


def mac_address(seed: int, phone: Phone, index: int) -> bytes:
    raw = bytearray(_digest("mac", seed, phone.phone_id, index)[:6])
    raw[0] = raw[0] & 0xFC | (0x02 if phone.randomized else 0x00)
    return bytes(raw)


def pseudonym(seed: int, phone: Phone, index: int, key_epoch: int) -> int:
    """Stand-in for HMAC(epoch key, MAC): stable within an epoch, unrelated across epochs."""
    return struct.unpack(">q", _digest("pseudonym", seed, phone.phone_id, index, key_epoch)[:8])[0]


def fingerprint(model: int) -> int:
    return int.from_bytes(_digest("model", model)[:4], "big")


def sightings(layout: StoreLayout, people: Iterable[Person], key_period_s: int, seed: int) -> dict[str, list[EpochSighting]]:
    """Per sensor, its sightings of every phone, as a perfectly linking edge would send them."""
    out: dict[str, list[EpochSighting]] = {sensor: [] for sensor in layout.sensors}
    for person in people:
        phone = person.phone
        if phone is None:
            continue
        clusters: dict[str, int] = {}
        for t, zone_id in person.ticks():
            key_epoch = t // key_period_s
            index = mac_index(phone, t)
            name = pseudonym(seed, phone, index, key_epoch)
            for sensor, rssi_dbm in layout.zone(zone_id).heard_dbm.items():
                cluster = clusters.setdefault(f"{sensor}/{key_epoch}", name)
                row = SightingRow(
                    t, name, cluster, BURST_FRAMES, rssi_dbm, float(rssi_dbm), 6, phone.randomized,
                    fingerprint(phone.model), None, None,
                )  # fmt: skip
                out[sensor].append(EpochSighting(key_epoch, row))
    for rows in out.values():
        rows.sort(key=lambda s: (s.row.start_s, s.row.pseudonym))
    return out


def _capabilities(model: int) -> bytes:
    """Supported rates and HT capabilities that differ by model (what the edge fingerprints)."""
    rates = bytes([1, 8, 0x82, 0x84, 0x8B, 0x96, 0x0C, 0x12, 0x18, 0x24])
    ht = bytes([45, 26]) + _digest("ht", model)[:26]
    return b"\x00\x00" + rates + ht


def probe_frames(layout: StoreLayout, people: Iterable[Person], sensor: str, seed: int, rssi_noise_db: float = 2.0) -> list[Frame]:
    """Every probe request ``sensor`` hears, in time order."""
    rng = random.Random(f"{seed}/{sensor}")
    frames: list[Frame] = []
    for person in people:
        phone = person.phone
        if phone is None:
            continue
        sequence = rng.randrange(4_096)
        last_index = None
        elements = _capabilities(phone.model)
        for t, zone_id in person.ticks():
            index = mac_index(phone, t)
            if last_index is not None and index != last_index and not phone.keeps_sequence:
                sequence = rng.randrange(4_096)
            last_index = index
            heard_dbm = layout.zone(zone_id).heard_dbm.get(sensor)
            for burst in range(BURST_FRAMES):
                sequence = (sequence + 1) % 4_096
                if heard_dbm is None:
                    continue
                at_s = t + 0.1 + burst * BURST_SPREAD_S / BURST_FRAMES + rng.random() * 0.05
                rssi_dbm = max(-100, min(-20, round(heard_dbm + rng.gauss(0, rssi_noise_db))))
                mac = mac_address(seed, phone, index)
                frames.append((at_s, LINKTYPE_RADIOTAP, probe_request_frame(mac, sequence, rssi_dbm, elements)))
    frames.sort(key=lambda frame: frame[0])
    return frames
