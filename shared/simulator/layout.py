"""A simulated store: its sensors, camera, zones, and what each sensor hears from each zone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ZoneSpec:
    """A zone as the ``zones`` table has it, plus how loud a phone standing there is at each sensor."""

    zone_id: str
    device_id: str
    rssi_min_dbm: int
    rssi_max_dbm: int
    #: Sensor → RSSI (dBm) of a phone in this zone; sensors not named do not hear it.
    heard_dbm: Mapping[str, int]
    #: Beyond the door: moving between an outside and an inside zone crosses the camera's line.
    inside: bool

    def __post_init__(self) -> None:
        loudest = max(self.heard_dbm, key=lambda sensor: (self.heard_dbm[sensor], sensor))
        if loudest != self.device_id or not self.rssi_min_dbm <= self.heard_dbm[loudest] <= self.rssi_max_dbm:
            raise ValueError(f"zone {self.zone_id}: its own sensor must hear it loudest, within its band")


@dataclass(frozen=True)
class StoreLayout:
    site_id: str
    time_zone: str
    sensors: tuple[str, ...]
    #: The door camera's device id and counting line.
    camera: str
    door_line: str
    zones: tuple[ZoneSpec, ...]
    window_s: int = 10

    def zone(self, zone_id: str) -> ZoneSpec:
        return next(zone for zone in self.zones if zone.zone_id == zone_id)


def two_sensor_shop(site_id: str = "sim-shop", time_zone: str = "Europe/Prague") -> StoreLayout:
    """A shop with a street front: sensor ``front`` by the door, ``back`` at the rear, a door camera.

    The street is the front sensor's weak band; inside, the nearer sensor is
    the louder one, and both hear every phone inside (so their MAC clusters
    share pseudonyms and the collector can join them).
    """
    return StoreLayout(
        site_id=site_id,
        time_zone=time_zone,
        sensors=("front", "back"),
        camera="door",
        door_line="door",
        zones=(
            ZoneSpec("street", "front", -90, -66, {"front": -78}, inside=False),
            ZoneSpec("entrance", "front", -65, 0, {"front": -52, "back": -74}, inside=True),
            ZoneSpec("aisles", "back", -65, 0, {"front": -76, "back": -50}, inside=True),
        ),
    )
