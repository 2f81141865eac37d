"""Every example query of docs/data-model.md, run against a simulated store, returns what the truth says.

The store is ``store-042``: ten local days up to now (today only until a
minute ago), visitors fewer by 70 % on the last three complete days (so the
alert fires), regulars with fixed MACs under a 30-day key (so visitors
return and segments form). The site's time zone is chosen so that it is
afternoon there, which makes "today" hold data whenever the test runs.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from shared.simulator import Scenario, ScenarioConfig, two_sensor_shop
from shared.simulator.truth import TruthVisit
from tests.analytics.store_db import SimulatedStore

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-model.md"
SITE = "store-042"
DAYS = 10
DIP_DAYS = 3


def doc_examples() -> dict[str, str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    return {re.match(r"-- example: (\w+)\n", block)[1]: block for block in blocks}


def afternoon_time_zone(now: datetime) -> str:
    """A whole-hour zone where it is 16:xx now."""
    offset_h = 16 - now.hour
    offset_h = offset_h + 24 if offset_h < -12 else offset_h - 24 if offset_h > 14 else offset_h
    return f"Etc/GMT{-offset_h:+d}" if offset_h else "Etc/GMT"


class Truth:
    """The simulator's truth, in the doc's terms (local days and hours of the site)."""

    def __init__(self, scenario: Scenario, now_s: float) -> None:
        self.scenario = scenario
        self.zone = ZoneInfo(scenario.layout.time_zone)
        self.today = self.day(now_s)
        self.visits = scenario.truth_visits()
        self.visitors = [v for v in self.visits if v.is_visitor]
        self.crossings = scenario.crossings()

    def local(self, epoch_s: float) -> datetime:
        return datetime.fromtimestamp(epoch_s, timezone.utc).astimezone(self.zone)

    def day(self, epoch_s: float) -> date:
        return self.local(epoch_s).date()

    def per_day(self, pick: Callable[[TruthVisit], bool], zone: str = "*") -> Counter:
        """Arrivals per local day: visits starting (``*``) or first entering ``zone``."""
        counted: Counter = Counter()
        for visit in filter(pick, self.visits):
            if zone == "*":
                counted[self.day(visit.started_s)] += 1
            elif zone in (firsts := visit.zone_firsts()):
                counted[self.day(firsts[zone][0])] += 1
        return counted

    def crossings_per_day(self, direction: str) -> Counter:
        return Counter(self.day(c.t) for c in self.crossings if c.direction == direction)

    def zones(self) -> list[str]:
        return ["*", *sorted(z.zone_id for z in self.scenario.layout.zones)]


def generate(now_s: float) -> Scenario:
    layout = two_sensor_shop(site_id=SITE, time_zone=afternoon_time_zone(datetime.fromtimestamp(now_s, timezone.utc)))
    zone = ZoneInfo(layout.time_zone)
    today = datetime.fromtimestamp(now_s, zone).date()
    config = ScenarioConfig(
        first_day=today - timedelta(days=DAYS - 1), days=DAYS, passersby_per_day=30, regulars=12,
        regular_visit_chance=0.6, key_period_s=30 * 86_400, seed=42,
    )  # fmt: skip
    scenario = Scenario.generate(layout, config)
    rng = random.Random(1)
    dip = {today - timedelta(days=n) for n in range(1, DIP_DAYS + 1)}

    def keep(person) -> bool:
        ticks = person.ticks()
        if ticks[-1][0] > now_s - 120:
            return False  # not yet happened (or still going on): today ends now
        in_dip = datetime.fromtimestamp(person.arrive_s, zone).date() in dip
        return not (in_dip and person.kind == "visitor" and rng.random() < 0.7)

    return Scenario(layout, config, [p for p in scenario.people if keep(p)])


async def test_every_example_query_of_the_data_model_returns_the_truth(pool: asyncpg.Pool) -> None:
    now_s = time.time()
    scenario = generate(now_s)
    store = await SimulatedStore.create(pool, scenario.layout)
    await store.send(scenario.batches(max_events=2_000), analytics_every=10)
    truth = Truth(scenario, now_s)
    examples = doc_examples()
    checks = {
        "live_today": check_live_today, "hourly_per_zone": check_hourly_per_zone, "daily_per_zone": check_daily_per_zone,
        "entry_rate": check_entry_rate, "dwell_distribution": check_dwell_distribution,
        "new_vs_returning": check_new_vs_returning, "zone_heatmap": check_zone_heatmap, "paths": check_paths,
        "zone_flows": check_zone_flows, "frequency_segments": check_frequency_segments, "campaign": check_campaign,
        "alert": check_alert,
    }  # fmt: skip
    assert set(examples) == set(checks) | {"configure_zones", "rebuild"}, "every example in the doc has a check here"
    zones = "SELECT zone_id, device_id, rssi_min_dbm, rssi_max_dbm FROM footfall.zones ORDER BY 1"
    simulated = [tuple(r) for r in await pool.fetch(zones)]
    await run(pool, examples["configure_zones"])  # the doc's zones are the simulated store's
    assert [tuple(r) for r in await pool.fetch(zones)] == simulated
    for name, check in checks.items():
        rows = await run(pool, examples[name])
        check(rows, truth)

    later = await pool.fetch("SELECT DISTINCT segment FROM footfall.visit_frequency(now() + interval '40 days')")
    assert [r["segment"] for r in later] == ["lapsed"]  # nobody came in the 28 days before then

    before = await store.tables()
    await run(pool, examples["rebuild"])
    assert await pool.fetchval("SELECT count(*) FROM footfall.analytics_dirty") > 0
    await store.analytics.drain()
    assert await store.tables() == before


async def run(pool: asyncpg.Pool, sql: str) -> list[asyncpg.Record]:
    """Run a doc block: every statement but the last for its effect, the last for its rows."""
    *effects, last = [statement for statement in sql.split(";\n") if statement.strip()]
    for statement in effects:
        await pool.execute(statement)
    return await pool.fetch(last)


# --------------------------------------------------------------------------- checks


def check_live_today(rows, truth: Truth) -> None:
    (row,) = rows
    assert row["visitors"] == truth.per_day(lambda v: v.is_visitor)[truth.today] > 0
    assert row["passersby"] == truth.per_day(lambda v: v.is_passerby)[truth.today]
    assert row["entries"] == truth.crossings_per_day("in")[truth.today]
    assert row["exits"] == truth.crossings_per_day("out")[truth.today]
    assert row["devices_now"] is not None and row["devices_now"] >= 0


def check_hourly_per_zone(rows, truth: Truth) -> None:
    yesterday = truth.today - timedelta(days=1)
    expected: Counter = Counter()
    for visit in truth.visits:
        if not (visit.is_visitor or visit.is_passerby):
            continue
        arrivals = {"*": visit.started_s} | {z: first for z, (first, _) in visit.zone_firsts().items()}
        for zone_id, at_s in arrivals.items():
            local = truth.local(at_s)
            if local.date() == yesterday:
                expected[(local.hour, zone_id, "visitor" if visit.is_visitor else "passerby")] += 1
    got: Counter = Counter()
    for row in rows:
        got[(row["local_hour"].hour, row["zone_id"], "visitor")] += row["visitors"]
        got[(row["local_hour"].hour, row["zone_id"], "passerby")] += row["passersby"]
    assert +got == expected


def check_daily_per_zone(rows, truth: Truth) -> None:
    days = {truth.today - timedelta(days=n) for n in range(1, 8)}
    assert {r["local_day"] for r in rows} == days
    for zone_id in truth.zones():
        visitors = truth.per_day(lambda v: v.is_visitor, zone_id)
        passersby = truth.per_day(lambda v: v.is_passerby, zone_id)
        got = {r["local_day"]: r for r in rows if r["zone_id"] == zone_id}
        assert {d: got[d]["visitors"] for d in got} == {d: visitors[d] for d in got}
        assert {d: got[d]["passersby"] for d in got} == {d: passersby[d] for d in got}
    entries = truth.crossings_per_day("in")
    assert {r["local_day"]: r["entries"] for r in rows if r["zone_id"] == "*"} == {d: entries[d] for d in days}


def check_entry_rate(rows, truth: Truth) -> None:
    entries, passersby = truth.crossings_per_day("in"), truth.per_day(lambda v: v.is_passerby)
    assert [(r["local_day"], r["entries"], r["passersby"]) for r in rows] == [
        (day, entries[day], passersby[day]) for day in sorted(set(entries) | set(passersby))
    ]
    for row in rows:
        assert float(row["entry_rate"]) == round(row["entries"] / row["passersby"], 3)


def check_dwell_distribution(rows, truth: Truth) -> None:
    bounds = [(300, "1: < 5 min"), (1_200, "2: 5-20 min"), (3_600, "3: 20-60 min"), (21_600, "4: 1-6 h")]
    expected = Counter(
        next((label for limit, label in bounds if v.dwell_s < limit), "5: 6 h +")
        for v in truth.visitors
        if truth.day(v.started_s) == truth.today - timedelta(days=1)
    )
    assert {r["dwell"]: r["visits"] for r in rows} == expected


def check_new_vs_returning(rows, truth: Truth) -> None:
    returning = truth.per_day(lambda v: v.is_returning)
    new = truth.per_day(lambda v: v.is_visitor and not v.is_returning)
    days_with_rows = [r["local_day"] for r in rows]
    assert [(r["new_visitors"], r["returning_visitors"]) for r in rows] == [(new[d], returning[d]) for d in days_with_rows]
    assert sum(returning.values()) >= 5


def check_zone_heatmap(rows, truth: Truth) -> None:
    since = truth.today - timedelta(days=7)
    expected: Counter = Counter()
    for visit in truth.visitors:
        for zone_id, (first_s, _) in visit.zone_firsts().items():
            if truth.day(first_s) >= since:
                expected[(zone_id, truth.local(first_s).hour)] += 1
    got = Counter({(r["zone_id"], r["hour_of_day"]): r["visitors"] for r in rows})
    assert +got == expected


def check_paths(rows, truth: Truth) -> None:
    paths = Counter(" > ".join(stay.zone_id for stay in v.trajectory) for v in truth.visitors)
    expected = sorted(paths.items(), key=lambda item: (-item[1], item[0]))[:10]
    assert [(r["path"], r["visits"]) for r in rows] == expected


def check_zone_flows(rows, truth: Truth) -> None:
    moves = Counter(
        (a.zone_id, b.zone_id) for v in truth.visitors for a, b in zip(v.trajectory, v.trajectory[1:])
    )
    assert {(r["from_zone"], r["to_zone"]): r["moves"] for r in rows} == moves


def check_frequency_segments(rows, truth: Truth) -> None:
    days: dict[tuple[int, int], set[date]] = defaultdict(set)
    for visit in truth.visitors:
        days[(visit.phone_id, visit.started_s // truth.scenario.config.key_period_s)].add(truth.day(visit.started_s))
    window_start = truth.today - timedelta(days=28)
    segments = Counter(
        "frequent" if len(in_window := {d for d in visit_days if d > window_start}) >= 4
        else "occasional" if in_window else "lapsed"
        for visit_days in days.values()
    )  # fmt: skip
    assert {r["segment"]: r["visitors"] for r in rows} == segments
    assert segments["frequent"] >= 2 and segments["occasional"] >= 10


def check_campaign(rows, truth: Truth) -> None:
    (row,) = rows
    visitors = truth.per_day(lambda v: v.is_visitor)
    campaign_days = [truth.today - timedelta(days=n) for n in (3, 2, 1)]
    baseline_days = [truth.today - timedelta(days=n) for n in (6, 5, 4)]
    assert (row["baseline_first_day"], row["first_day"], row["last_day"]) == (baseline_days[0], campaign_days[0], campaign_days[-1])
    baseline = statistics.fmean(visitors[d] for d in baseline_days)
    campaign = statistics.fmean(visitors[d] for d in campaign_days)
    assert abs(row["baseline_visitors_per_day"] - baseline) < 1e-4
    assert abs(row["campaign_visitors_per_day"] - campaign) < 1e-4
    assert float(row["visitors_change"]) == round(campaign / baseline - 1, 3) < -0.5  # the dip


def check_alert(rows, truth: Truth) -> None:
    assert [(r["site_id"], r["since"]) for r in rows] == [(SITE, truth.today - timedelta(days=DIP_DAYS))]
