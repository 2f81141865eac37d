"""The page in a real headless Chromium: the device list and every chart show what SQL says.

The database holds ten simulated days of a two-sensor shop with a door camera
(the store of docs/data-model.md's test, in a time zone where it is afternoon
now), device statuses committed through the collector's writer, and a second
site whose device was never seen. Every figure is read from the DOM's
``data-value`` attributes and compared with SQL written here against the
documented tables and views, not with the page's own queries.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from collector.config import WebConfig
from collector.db.writer import Writer
from collector.ingest import StatusUpdate, ingest_status
from collector.registry import add_site, enroll_device
from collector.state import CollectorState
from shared.devstack.browser import HeadlessChromium, find_chromium
from shared.signing import DeviceSigner
from shared.topics import status_topic
from tests.analytics.store_db import SimulatedStore
from tests.analytics.test_data_model_doc import generate
from tests.web.conftest import TOKEN, Serve

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")

SITE = "store-042"

READ_DOM = """(() => {
  const v = (e) => (e === null || e.dataset.value === "" ? null : Number(e.dataset.value));
  const q = (selector) => [...document.querySelectorAll(selector)];
  return {
    now: document.getElementById("site").dataset.now,
    summary: Object.fromEntries(q("#fleet-summary [data-key]").map((e) => [e.dataset.key, v(e)])),
    fleet: q("#fleet-table tbody tr").map((tr) => ({
      site: tr.dataset.site, device: tr.dataset.device, online: tr.dataset.online === "true",
      problems: Number(tr.dataset.problems), version: tr.querySelector("[data-key=version]").textContent,
      spool: v(tr.querySelector("[data-key=spool]")), evicted: v(tr.querySelector("[data-key=evicted]")),
      skew: v(tr.querySelector("[data-key=skew]")), wifi: tr.querySelector("[data-key=wifi]").textContent,
      camera: tr.querySelector("[data-key=camera]").textContent,
    })),
    kpis: Object.fromEntries(q(".kpi").map((k) => [k.dataset.metric,
      {today: v(k.querySelector(".today")), last_week: v(k.querySelector(".last-week"))}])),
    hourly: q("#hourly .hour").map((h) => ({hour: h.dataset.hour, ...Object.fromEntries(
      q(`#hourly .hour[data-hour="${h.dataset.hour}"] .bar`).map((b) => [b.dataset.series, v(b)]))})),
    bars: q("#hourly .bar").map((b) => [v(b), b.getBoundingClientRect().height]),
    heatmap: q("#heatmap td").map((td) => [td.dataset.zone, Number(td.dataset.hour), v(td)]),
    dwell: q("#dwell .hbar").map((b) => [b.dataset.bucket, v(b), b.getBoundingClientRect().width]),
    flows: q("#flows .hbar").map((b) => [b.dataset.from, b.dataset.to, v(b), Number(b.dataset.moves)]),
  };
})()"""


def status(device: str, received_at_s: float, **fields: object) -> StatusUpdate:
    update = ingest_status(status_topic(SITE, device), json.dumps(fields).encode(), received_at_s, live=True)
    assert isinstance(update, StatusUpdate), update
    return update


def healthy(**overrides: object) -> dict[str, object]:
    return {
        "state": "online", "agent_version": "0.1.0",
        "spool": {"batches": 2, "bytes": 4096, "evicted_batches": 0, "evicted_events": 0},
        "wifi": {"capture": {"state": "capturing"}},
    } | overrides  # fmt: skip


async def fill(pool: asyncpg.Pool, now_s: float) -> str:
    """The simulated store, its devices' statuses, and a second site never heard from; returns the time zone."""
    scenario = generate(now_s)
    store = await SimulatedStore.create(pool, scenario.layout)
    await store.send(scenario.batches(max_events=2_000), analytics_every=10)
    writer = Writer(pool, CollectorState())
    for update in (
        status("front", now_s - 20, at_s=now_s - 19.8, **healthy()),
        status("back", now_s - 900, at_s=now_s - 900, **healthy()),
        status("back", now_s - 600, state="offline"),  # its last will
        status("door", now_s - 10, at_s=now_s + 2.4, **healthy(
            wifi={}, camera={"state": "stalled"},
            spool={"batches": 250, "bytes": 10**6, "evicted_batches": 7, "evicted_events": 900})),
    ):  # fmt: skip
        await writer.commit([update])
    async with pool.acquire() as connection:
        await add_site(connection, "kiosk-7", "Europe/Prague", "Station kiosk")
        await enroll_device(connection, "kiosk-7", "k1", DeviceSigner.generate().public_key_bytes)
    return scenario.layout.time_zone


async def test_the_page_shows_the_devices_and_charts_sql_computes(
    db: asyncpg.Pool, serve: Serve, web_config: WebConfig, tmp_path: Path
) -> None:
    time_zone = await fill(db, time.time())
    base = await serve(web_config)
    async with HeadlessChromium() as browser:
        page = await browser.new_page(headers={"Authorization": f"Bearer {TOKEN}"})
        await page.navigate(f"{base}/?site={SITE}")
        await page.wait_for("Number(document.body.dataset.renders) >= 1")
        dom = await page.evaluate(READ_DOM)
        screenshot = await page.screenshot()
        (tmp_path / "status-page.png").write_bytes(screenshot)
        assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 20_000

        await check_fleet(db, dom)
        window = Window(datetime.fromisoformat(dom["now"]), ZoneInfo(time_zone))
        await check_kpis(db, dom, window)
        await check_hourly(db, dom, window)
        await check_heatmap(db, dom, window)
        await check_dwell(db, dom, window)
        await check_flows(db, dom, window)

        # Live: the page fetches again by itself and shows the device that came back.
        await Writer(db, CollectorState()).commit([status("back", time.time(), at_s=time.time(), **healthy())])
        await page.wait_for(f'document.querySelector(\'tr[data-device="back"]\').dataset.online === "true"', 10)
        await page.close()


class Window:
    """The page's time ranges, worked out here with zoneinfo rather than SQL."""

    def __init__(self, now: datetime, zone: ZoneInfo) -> None:
        self.now = now
        local_now = now.astimezone(zone)
        self.today: date = local_now.date()
        self.today_start = datetime.combine(self.today, datetime.min.time(), zone)
        self.last_week_start = datetime.combine(self.today - timedelta(days=7), datetime.min.time(), zone)
        self.last_week_now = (local_now.replace(tzinfo=None) - timedelta(days=7)).replace(tzinfo=zone)
        self.recent_start = datetime.combine(self.today - timedelta(days=6), datetime.min.time(), zone)


async def check_fleet(db: asyncpg.Pool, dom: dict) -> None:
    rows = {(r["site"], r["device"]): r for r in dom["fleet"]}
    assert len(rows) == len(dom["fleet"]) == await db.fetchval("SELECT count(*) FROM footfall.devices") == 4
    assert dom["summary"] == {"devices": 4, "online": 2, "with_problems": 3}
    problems = [r["problems"] for r in dom["fleet"]]
    assert problems == sorted(problems, reverse=True) and problems[-1] == 0, "problems first"
    front, back, door, kiosk = (rows[SITE, "front"], rows[SITE, "back"], rows[SITE, "door"], rows["kiosk-7", "k1"])
    assert front["online"] and front["problems"] == 0 and front["wifi"] == "capturing"
    assert not back["online"] and back["problems"] == 1 and back["version"] == "0.1.0"
    assert door["online"] and door["problems"] == 4 and door["camera"] == "stalled"  # backlog, evicted, camera, clock
    assert not kiosk["online"] and kiosk["problems"] == 1 and kiosk["version"] == "—"
    for device in await db.fetch("SELECT * FROM footfall.devices"):
        row = rows[device["site_id"], device["device_id"]]
        assert row["spool"] == device["spool_batches"] and row["evicted"] == device["evicted_batches"]
        assert row["skew"] == device["clock_skew_s"] and row["version"] == (device["agent_version"] or "—")


async def check_kpis(db: asyncpg.Pool, dom: dict, w: Window) -> None:
    today = await db.fetchrow(
        "SELECT entries, visitors, passersby, entry_rate FROM footfall.footfall_daily"
        " WHERE site_id = $1 AND zone_id = '*' AND local_day = $2",
        SITE, w.today,
    )  # fmt: skip
    last_week = await db.fetchrow(
        "SELECT sum(entries) AS entries, sum(visitors) AS visitors, sum(passersby) AS passersby,"
        " sum(entries)::float8 / nullif(sum(passersby), 0) AS entry_rate FROM footfall.footfall"
        " WHERE site_id = $1 AND zone_id = '*' AND bucket_start >= $2 AND bucket_start < $3",
        SITE, w.last_week_start, w.last_week_now,
    )  # fmt: skip
    assert today["visitors"] > 0 and today["entries"] > 0 and last_week["visitors"] > 0
    for key in ("entries", "visitors", "passersby"):
        assert dom["kpis"][key] == {"today": today[key], "last_week": last_week[key]}, key
    assert dom["kpis"]["entry_rate"]["today"] == pytest.approx(today["entry_rate"], rel=1e-6)
    assert dom["kpis"]["entry_rate"]["last_week"] == pytest.approx(last_week["entry_rate"], rel=1e-9)


async def check_hourly(db: asyncpg.Pool, dom: dict, w: Window) -> None:
    rows = await db.fetch(
        "SELECT to_char(local_hour, 'HH24:MI') AS hour, entries, visitors, passersby FROM footfall.footfall_hourly"
        " WHERE site_id = $1 AND zone_id = '*' AND hour_start >= $2",
        SITE, w.today_start,
    )  # fmt: skip
    hours = [f"{h:02d}:00" for h in range(w.now.astimezone(w.today_start.tzinfo).hour + 1)]
    expected = [{"hour": h, "entries": 0, "visitors": 0, "passersby": 0} for h in hours]
    by_hour = {row["hour"]: dict(row) for row in rows}
    expected = [by_hour.get(e["hour"], e) for e in expected]
    assert dom["hourly"] == expected
    # Drawn: bars as tall as their share of the largest value (the chart is 160 px less the tick labels).
    top_value, top_height = max(dom["bars"])
    assert top_value > 0 and top_height > 100
    for value, height in dom["bars"]:
        assert height == pytest.approx(top_height * value / top_value, abs=1.5)


async def check_heatmap(db: asyncpg.Pool, dom: dict, w: Window) -> None:
    rows = await db.fetch(
        "SELECT zone_id, extract(hour FROM local_hour)::int AS hour, sum(visitors)::int AS visitors"
        " FROM footfall.footfall_hourly WHERE site_id = $1 AND zone_id <> '*' AND hour_start >= $2 GROUP BY 1, 2",
        SITE, w.recent_start,
    )  # fmt: skip
    expected = {(r["zone_id"], r["hour"]): r["visitors"] for r in rows}
    shown = {(zone, hour): value for zone, hour, value in dom["heatmap"]}
    assert {cell: value for cell, value in shown.items() if value} == {c: v for c, v in expected.items() if v}
    assert {zone for zone, _ in shown} == {"street", "entrance", "aisles"}
    assert set(expected) <= set(shown)


async def check_dwell(db: asyncpg.Pool, dom: dict, w: Window) -> None:
    rows = await db.fetch(
        """SELECT CASE WHEN dwell_s < 300 THEN '< 5 min' WHEN dwell_s < 1200 THEN '5–20 min'
                       WHEN dwell_s < 3600 THEN '20–60 min' WHEN dwell_s < 21600 THEN '1–6 h' ELSE '6 h +' END AS bucket,
                  count(*)::int AS visitors
           FROM footfall.visits WHERE site_id = $1 AND is_visitor AND started_at >= $2 GROUP BY 1""",
        SITE, w.recent_start,
    )  # fmt: skip
    expected = {r["bucket"]: r["visitors"] for r in rows}
    shown = {bucket: value for bucket, value, _ in dom["dwell"]}
    assert list(shown) == ["< 5 min", "5–20 min", "20–60 min", "1–6 h", "6 h +"]
    assert shown == {bucket: expected.get(bucket, 0) for bucket in shown} and sum(shown.values()) > 0
    widest = max(width for _, _, width in dom["dwell"])
    assert widest > 50 and all(width == pytest.approx(widest * value / max(shown.values()), abs=1.5)
                               for _, value, width in dom["dwell"])  # fmt: skip


async def check_flows(db: asyncpg.Pool, dom: dict, w: Window) -> None:
    rows = await db.fetch(
        "SELECT from_zone, to_zone, sum(visits)::int AS visits, sum(moves)::int AS moves FROM footfall.zone_flows"
        " WHERE site_id = $1 AND local_day >= $2 GROUP BY 1, 2 ORDER BY 3 DESC, 4 DESC, 1, 2 LIMIT 10",
        SITE, w.today - timedelta(days=6),
    )  # fmt: skip
    assert len(rows) >= 2
    assert dom["flows"] == [[r["from_zone"], r["to_zone"], r["visits"], r["moves"]] for r in rows]
