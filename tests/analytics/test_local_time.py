"""Local hours and days: a site in a daylight-saving zone gets 23- and 25-hour days right."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.protocol import Batch, CrossingRow, Crossings
from shared.simulator import StoreLayout, two_sensor_shop
from tests.analytics.store_db import SimulatedStore

BERLIN = ZoneInfo("Europe/Berlin")
#: Spring forward (23 h), a normal day, fall back (25 h).
DAYS = (date(2024, 3, 31), date(2024, 4, 1), date(2024, 10, 27))


def _half_past_every_local_hour(day: date) -> list[float]:
    """Unix times of hh:30 local for every hour the local day really has."""
    start = datetime.combine(day, datetime.min.time(), BERLIN).timestamp()
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), BERLIN).timestamp()
    return [t + 1_800 for t in range(int(start), int(end), 3_600)]


async def test_footfall_daily_and_hourly_follow_the_sites_local_days_across_daylight_saving(pool):
    layout: StoreLayout = two_sensor_shop(site_id="berlin", time_zone="Europe/Berlin")
    store = await SimulatedStore.create(pool, layout)
    batches = []
    for seq, day in enumerate(DAYS, start=1):
        times = _half_past_every_local_hour(day)
        rows = [CrossingRow(t, "door", "in", n) for n, t in enumerate(times)]
        batches.append(Batch("berlin", layout.camera, seq, times[-1] + 5, 0, seq, crossings=Crossings(rows=rows)))
    await store.send(batches)

    daily = await store.fetch(
        "SELECT local_day, day_hours, entries, day_end - day_start AS length FROM footfall.footfall_daily"
        " WHERE site_id = 'berlin' AND zone_id = '*' ORDER BY local_day"
    )
    assert [(r["local_day"], r["day_hours"], r["entries"]) for r in daily] == [
        (date(2024, 3, 31), 23, 23),
        (date(2024, 4, 1), 24, 24),
        (date(2024, 10, 27), 25, 25),
    ]
    assert [r["length"] for r in daily] == [timedelta(hours=23), timedelta(hours=24), timedelta(hours=25)]

    hourly = await store.fetch(
        "SELECT local_hour, hour_start, entries FROM footfall.footfall_hourly"
        " WHERE site_id = 'berlin' AND zone_id = '*' AND local_hour::date = '2024-10-27' ORDER BY hour_start"
    )
    assert len(hourly) == 25 and all(r["entries"] == 1 for r in hourly)
    local_hours = [r["local_hour"].hour for r in hourly]
    assert local_hours[:5] == [0, 1, 2, 2, 3]  # 02:00 happens twice, as two rows an hour apart
    assert hourly[3]["hour_start"] - hourly[2]["hour_start"] == timedelta(hours=1)
    spring = await store.fetch(
        "SELECT local_hour FROM footfall.footfall_hourly WHERE site_id = 'berlin' AND zone_id = '*'"
        " AND local_hour::date = '2024-03-31' ORDER BY hour_start"
    )
    assert [r["local_hour"].hour for r in spring][:3] == [0, 1, 3]  # no 02:00 that night
