"""A site's analytics settings: time zone, zones and thresholds, as the database holds them.

Thresholds are columns of ``footfall.sites`` (migration 004), not collector
configuration, so every collector of a fleet computes with the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import asyncpg

from collector.analytics.footfall import BUCKET_S
from collector.analytics.presence import PresenceConfig
from collector.analytics.sessions import SessionConfig
from collector.analytics.stationary import StationaryConfig
from collector.analytics.zones import Zone, ZoneMap

#: Steps of the devices-present average, seconds.
PRESENCE_RESOLUTION_S = 60


@dataclass(frozen=True)
class SiteSettings:
    """A site's time zone, zones and thresholds (``sites`` and ``zones``)."""

    site_id: str
    time_zone: ZoneInfo
    zones: ZoneMap
    session: SessionConfig
    presence: PresenceConfig
    stationary: StationaryConfig

    @classmethod
    async def load(cls, connection: asyncpg.Connection, site_id: str) -> SiteSettings:
        site = await connection.fetchrow("SELECT * FROM footfall.sites WHERE site_id = $1", site_id)
        zones = await connection.fetch(
            "SELECT zone_id, device_id, rssi_min_dbm, rssi_max_dbm FROM footfall.zones WHERE site_id = $1", site_id
        )
        return cls(
            site_id=site_id,
            time_zone=ZoneInfo(site["time_zone"]),
            zones=ZoneMap((Zone(*zone) for zone in zones), site["passerby_rssi_dbm"]),
            session=SessionConfig(site["visit_gap_s"], site["visitor_rssi_dbm"], site["visitor_min_dwell_s"]),
            presence=PresenceConfig(
                bucket_s=BUCKET_S,
                band_dbm=site["visitor_rssi_dbm"],
                gap_s=site["presence_gap_s"],
                resolution_s=PRESENCE_RESOLUTION_S,
            ),
            stationary=StationaryConfig(site["stationary_min_hours"]),
        )
