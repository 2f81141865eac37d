"""Zones: where a device is at each moment, from which sensor hears it loudest.

A zone is one sensor's RSSI band (the ``zones`` table): ``street`` = sensor d1
at −90…−66 dBm, ``inside`` = d1 at ≥ −65 dBm. One model serves a one-sensor
shop and a multi-sensor mall: at every moment (one sighting window) the sensor
that hears the device loudest decides, and the moment is in that sensor's
zone whose band holds the RSSI. A sensor without configured zones is one zone
named after it, from the site's ``passerby_rssi_dbm`` up, so a site works
before anyone configures zones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from collector.analytics.devices import DeviceSighting

#: The zone_id of the whole site in the footfall table.
WHOLE_SITE = "*"


@dataclass(frozen=True)
class Zone:
    zone_id: str
    device_id: str
    rssi_min_dbm: int
    rssi_max_dbm: int

    def holds(self, rssi_dbm: int) -> bool:
        return self.rssi_min_dbm <= rssi_dbm <= self.rssi_max_dbm


class Moment(NamedTuple):
    """One sighting window of one device, placed in a zone."""

    start_s: int
    end_s: int
    zone_id: str
    #: Loudest frame of the moment over all sensors, dBm; ``None`` when no sensor measured it.
    rssi_max: int | None
    #: The moment reached the site's visitor band (unmeasured RSSI counts as reaching it).
    in_visitor_band: bool


class ZoneMap:
    """The zones of one site, looked up by sensor and RSSI."""

    def __init__(self, zones: Iterable[Zone], passerby_rssi_dbm: int = -90) -> None:
        self._by_sensor: dict[str, list[Zone]] = defaultdict(list)
        for zone in zones:
            self._by_sensor[zone.device_id].append(zone)
        for sensor_zones in self._by_sensor.values():
            # Overlapping bands: the innermost (loudest) band wins, then the zone id.
            sensor_zones.sort(key=lambda zone: (-zone.rssi_min_dbm, zone.zone_id))
        self.passerby_rssi_dbm = passerby_rssi_dbm

    def zone_of(self, sensor: str, rssi_dbm: int | None) -> str | None:
        """The zone of a sighting heard by ``sensor``; ``None`` when no band of the sensor holds it."""
        configured = self._by_sensor.get(sensor)
        if configured is None:
            return sensor if rssi_dbm is None or rssi_dbm >= self.passerby_rssi_dbm else None
        if rssi_dbm is None:
            return configured[0].zone_id
        return next((zone.zone_id for zone in configured if zone.holds(rssi_dbm)), None)


def moments(sightings: Iterable[DeviceSighting], zones: ZoneMap, visitor_rssi_dbm: int) -> list[Moment]:
    """One device's sightings (any sensors, any of its MACs) as moments in time order.

    Sightings of one window start are one moment; the loudest sensor decides its
    zone (a sensor that measured no RSSI only decides when no other did; ties go
    to the smaller sensor id). Moments outside every zone are left out.
    """
    by_start: dict[int, list[DeviceSighting]] = defaultdict(list)
    for sighting in sightings:
        by_start[sighting.start_s].append(sighting)
    placed = []
    for start_s in sorted(by_start):
        group = by_start[start_s]
        loudest = min(group, key=lambda s: (s.rssi_max is None, -(s.rssi_max or 0), s.sensor))
        zone_id = zones.zone_of(loudest.sensor, loudest.rssi_max)
        if zone_id is None:
            continue
        end_s = start_s + max(s.window_s for s in group)
        in_band = loudest.rssi_max is None or loudest.rssi_max >= visitor_rssi_dbm
        placed.append(Moment(start_s, end_s, zone_id, loudest.rssi_max, in_band))
    return placed
