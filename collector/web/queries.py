"""The page's figures, read from the collector's tables (docs/schema.md, docs/data-model.md).

Every function takes a connection and returns JSON-ready data (numbers,
strings, lists); collector/web/page.py turns it into HTTP. A site's time
windows are worked out once in its time zone (:func:`site_window`) and passed
to the other queries as timestamps, so PostgreSQL prunes partitions and uses
the ``(site_id, zone_id, bucket_start)`` key instead of scanning months.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

#: A device whose spool holds more batches than this is behind (the agent cannot upload fast enough).
SPOOL_BACKLOG_BATCHES = 100
#: A device clock further off than this, seconds, makes its event times doubtful.
CLOCK_SKEW_LIMIT_S = 5.0
#: Source states that mean "working"; anything else a device reports is a problem.
WIFI_OK, CAMERA_OK = "capturing", "streaming"
#: Flows shown, most visits first.
TOP_FLOWS = 10
#: Dwell buckets of the brief: upper bound (seconds, exclusive) and label.
DWELL_BUCKETS = ((300, "< 5 min"), (1_200, "5–20 min"), (3_600, "20–60 min"), (21_600, "1–6 h"), (None, "6 h +"))
#: The distributions (heatmap, dwell, flows) cover today and the local days before it, this many in all.
RECENT_DAYS = 7

SITES_SQL = "SELECT site_id, coalesce(name, site_id) AS name, time_zone FROM footfall.sites ORDER BY site_id"

FLEET_SQL = """
SELECT d.site_id, d.device_id, d.last_seen_at, d.status_state, d.agent_version, d.spool_batches, d.spool_bytes,
       d.evicted_batches, d.evicted_events, d.dropped_frames, d.wifi_state, d.camera_state, d.clock_skew_s,
       coalesce(array_agg(z.zone_id ORDER BY z.zone_id) FILTER (WHERE z.zone_id IS NOT NULL), '{}') AS zones
FROM footfall.devices d
LEFT JOIN footfall.zones z ON z.site_id = d.site_id AND z.device_id = d.device_id
GROUP BY d.site_id, d.device_id
"""

WINDOW_SQL = """
SELECT s.site_id, coalesce(s.name, s.site_id) AS name, s.time_zone,
       l.local_now::date AS today,
       l.local_now::date::timestamp AT TIME ZONE s.time_zone AS today_start,
       (l.local_now::date - 7)::timestamp AT TIME ZONE s.time_zone AS last_week_start,
       (l.local_now - interval '7 days') AT TIME ZONE s.time_zone AS last_week_now,
       (l.local_now::date - ($3::int - 1))::timestamp AT TIME ZONE s.time_zone AS recent_start
FROM footfall.sites s
CROSS JOIN LATERAL (SELECT $2::timestamptz AT TIME ZONE s.time_zone AS local_now) l
WHERE s.site_id = $1
"""

TOTALS_SQL = """
SELECT coalesce(sum(entries), 0)::int AS entries, coalesce(sum(exits), 0)::int AS exits,
       coalesce(sum(visitors), 0)::int AS visitors, coalesce(sum(passersby), 0)::int AS passersby
FROM footfall.footfall
WHERE site_id = $1 AND zone_id = '*' AND bucket_start >= $2 AND bucket_start < $3
"""

HOURLY_SQL = """
SELECT to_char(h.hour_start AT TIME ZONE $4, 'HH24:MI') AS hour,
       coalesce(sum(f.entries), 0)::int AS entries, coalesce(sum(f.visitors), 0)::int AS visitors,
       coalesce(sum(f.passersby), 0)::int AS passersby
FROM generate_series($2::timestamptz, $3::timestamptz, interval '1 hour') AS h (hour_start)
LEFT JOIN footfall.footfall f
       ON f.site_id = $1 AND f.zone_id = '*'
      AND f.bucket_start >= h.hour_start AND f.bucket_start < h.hour_start + interval '1 hour'
      AND f.bucket_start >= $2 AND f.bucket_start <= $3
GROUP BY h.hour_start
ORDER BY h.hour_start
"""

HEATMAP_SQL = """
SELECT zone_id, extract(hour FROM bucket_start AT TIME ZONE $4)::int AS hour, sum(visitors)::int AS visitors
FROM footfall.footfall
WHERE site_id = $1 AND zone_id <> '*' AND bucket_start >= $2 AND bucket_start < $3
GROUP BY 1, 2
"""

DWELL_SQL = """
SELECT width_bucket(dwell_s, $4::int[]) AS bucket, count(*)::int AS visitors
FROM footfall.visits
WHERE site_id = $1 AND is_visitor AND started_at >= $2 AND started_at < $3
GROUP BY 1
"""

# The zone_flows view's definition (docs/data-model.md) over a time range: a move counts
# when its second zone is entered in the range; a visit lasts at most a day, so its
# first segment and start lie within a day before.
FLOWS_SQL = """
SELECT a.zone_id AS from_zone, b.zone_id AS to_zone, count(*)::int AS moves, count(DISTINCT a.visit_id)::int AS visits
FROM footfall.trajectory b
JOIN footfall.trajectory a ON a.site_id = b.site_id AND a.visit_id = b.visit_id AND a.seq = b.seq - 1
JOIN footfall.visits v ON v.site_id = b.site_id AND v.visit_id = b.visit_id AND v.is_visitor
WHERE b.site_id = $1 AND b.entered_at >= $2 AND b.entered_at < $3
  AND a.entered_at >= $2 - interval '1 day' AND a.entered_at < $3
  AND v.started_at >= $2 - interval '1 day' AND v.started_at < $3
GROUP BY 1, 2
ORDER BY visits DESC, moves DESC, 1, 2
LIMIT $4
"""


@dataclass(frozen=True)
class SiteWindow:
    """The time ranges of one site's page, as UTC instants of its local days."""

    site_id: str
    name: str
    time_zone: str
    now: datetime
    today: str
    today_start: datetime
    last_week_start: datetime
    #: The same local time as now, a week ago: today so far compares with this much of last week's day.
    last_week_now: datetime
    recent_start: datetime


async def sites(connection: asyncpg.Connection) -> list[dict[str, str]]:
    return [dict(row) for row in await connection.fetch(SITES_SQL)]


async def fleet(connection: asyncpg.Connection, now: datetime, offline_after_s: float) -> dict[str, Any]:
    """Every device with its health and problems; devices with problems first."""
    devices = [_device(row, now, offline_after_s) for row in await connection.fetch(FLEET_SQL)]
    devices.sort(key=lambda d: (-len(d["problems"]), d["site_id"], d["device_id"]))
    return {
        "now": now.isoformat(),
        "devices": devices,
        "summary": {
            "devices": len(devices),
            "online": sum(d["online"] for d in devices),
            "with_problems": sum(bool(d["problems"]) for d in devices),
        },
    }


def _device(row: asyncpg.Record, now: datetime, offline_after_s: float) -> dict[str, Any]:
    last_seen = row["last_seen_at"]
    silent_s = (now - last_seen).total_seconds() if last_seen is not None else None
    online = row["status_state"] != "offline" and silent_s is not None and silent_s <= offline_after_s
    problems = []
    if last_seen is None:
        problems.append("never seen")
    elif not online:
        problems.append("offline")
    if (row["spool_batches"] or 0) > SPOOL_BACKLOG_BATCHES:
        problems.append(f"spool backlog {row['spool_batches']} batches")
    if row["evicted_batches"]:
        problems.append(f"spool full: {row['evicted_batches']} batches evicted")
    if row["wifi_state"] not in (None, WIFI_OK):
        problems.append(f"wifi {row['wifi_state']}")
    if row["camera_state"] not in (None, CAMERA_OK):
        problems.append(f"camera {row['camera_state']}")
    skew_s = row["clock_skew_s"]
    if skew_s is not None and abs(skew_s) > CLOCK_SKEW_LIMIT_S:
        problems.append(f"clock off by {skew_s:+.1f} s")
    return {
        "site_id": row["site_id"],
        "device_id": row["device_id"],
        "zones": list(row["zones"]),
        "last_seen_at": last_seen.isoformat() if last_seen is not None else None,
        "seen_ago_s": round(silent_s, 1) if silent_s is not None else None,
        "online": online,
        "agent_version": row["agent_version"],
        "spool_batches": row["spool_batches"],
        "evicted_batches": row["evicted_batches"],
        "wifi_state": row["wifi_state"],
        "camera_state": row["camera_state"],
        "clock_skew_s": skew_s,
        "problems": problems,
    }


async def site_window(connection: asyncpg.Connection, site_id: str, now: datetime) -> SiteWindow | None:
    row = await connection.fetchrow(WINDOW_SQL, site_id, now, RECENT_DAYS)
    if row is None:
        return None
    return SiteWindow(
        site_id=row["site_id"], name=row["name"], time_zone=row["time_zone"], now=now, today=row["today"].isoformat(),
        today_start=row["today_start"], last_week_start=row["last_week_start"], last_week_now=row["last_week_now"],
        recent_start=row["recent_start"],
    )  # fmt: skip


async def site_footfall(connection: asyncpg.Connection, window: SiteWindow) -> dict[str, Any]:
    """Today so far against the same weekday last week, today's hours, and the recent distributions."""
    w = window
    today = await _totals(connection, w.site_id, w.today_start, w.now)
    last_week = await _totals(connection, w.site_id, w.last_week_start, w.last_week_now)
    hourly = await connection.fetch(HOURLY_SQL, w.site_id, w.today_start, w.now, w.time_zone)
    return {
        "site": {"site_id": w.site_id, "name": w.name, "time_zone": w.time_zone},
        "now": w.now.isoformat(),
        "today": w.today,
        "recent_days": RECENT_DAYS,
        "totals": {"today": today, "last_week": last_week},
        "hourly": [dict(row) for row in hourly],
        "heatmap": await _heatmap(connection, w),
        "dwell": await _dwell(connection, w),
        "flows": [
            dict(row) for row in await connection.fetch(FLOWS_SQL, w.site_id, w.recent_start, w.now, TOP_FLOWS)
        ],
    }


async def _totals(connection: asyncpg.Connection, site_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    totals = dict(await connection.fetchrow(TOTALS_SQL, site_id, start, end))
    totals["entry_rate"] = totals["entries"] / totals["passersby"] if totals["passersby"] else None
    return totals


async def _heatmap(connection: asyncpg.Connection, w: SiteWindow) -> dict[str, Any]:
    """Visitors entering each zone per local hour of day, over the recent days."""
    rows = await connection.fetch(HEATMAP_SQL, w.site_id, w.recent_start, w.now, w.time_zone)
    hours = sorted({row["hour"] for row in rows})
    return {
        "zones": sorted({row["zone_id"] for row in rows}),
        "hours": list(range(hours[0], hours[-1] + 1)) if hours else [],
        "cells": [dict(row) for row in rows],
    }


async def _dwell(connection: asyncpg.Connection, w: SiteWindow) -> list[dict[str, Any]]:
    """Visitor visits of the recent days per dwell bucket, every bucket listed."""
    bounds = [limit for limit, _ in DWELL_BUCKETS if limit is not None]
    rows = await connection.fetch(DWELL_SQL, w.site_id, w.recent_start, w.now, bounds)
    counts = {row["bucket"]: row["visitors"] for row in rows}
    return [{"label": label, "visitors": counts.get(number, 0)} for number, (_, label) in enumerate(DWELL_BUCKETS)]
