"""Simulated stores through the writer and the analytics task: the tables against the simulator's truth."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date

import pytest

from shared.simulator import Scenario, ScenarioConfig, two_sensor_shop
from shared.simulator.edge import edge_batches
from shared.simulator.truth import TruthRow
from tests.analytics.store_db import SimulatedStore

#: Three days in one 7-day key period (Mon–Wed): regulars come back and are recognised.
WEEK = ScenarioConfig(first_day=date(2024, 3, 4), days=3, key_period_s=7 * 86_400, seed=11)


def _visit_key(started_s: int, ended_s: int, zones: tuple, *flags: bool) -> tuple:
    return (started_s, ended_s, zones, *flags)


async def _visits(store: SimulatedStore) -> set[tuple]:
    rows = await store.fetch(
        """SELECT extract(epoch FROM v.started_at)::int AS started_s, extract(epoch FROM v.ended_at)::int AS ended_s,
                  v.dwell_s, v.is_visitor, v.is_passerby, v.is_stationary, v.is_returning,
                  array_agg(ARRAY[t.zone_id, extract(epoch FROM t.entered_at)::text, extract(epoch FROM t.exited_at)::text]
                            ORDER BY t.seq) AS zones,
                  sum(t.dwell_s) AS zone_dwell_s
           FROM footfall.visits v JOIN footfall.trajectory t USING (site_id, visit_id)
           GROUP BY v.site_id, v.started_at, v.visit_id"""
    )
    for row in rows:
        assert row["dwell_s"] == row["ended_s"] - row["started_s"] == row["zone_dwell_s"]
    return {
        _visit_key(
            r["started_s"], r["ended_s"], tuple((z, int(float(a)), int(float(b))) for z, a, b in r["zones"]),
            r["is_visitor"], r["is_passerby"], r["is_stationary"], r["is_returning"],
        )  # fmt: skip
        for r in rows
    }


async def _footfall(store: SimulatedStore) -> dict[tuple[str, int], TruthRow]:
    rows = await store.fetch(
        """SELECT zone_id, extract(epoch FROM bucket_start)::int AS bucket, entries, exits, passersby, visitors,
                  new_visitors, returning_visitors, dwell_median_s
           FROM footfall.footfall WHERE passersby + visitors + coalesce(entries, 0) + coalesce(exits, 0) > 0"""
    )
    return {(r["zone_id"], r["bucket"]): TruthRow(*list(r.values())[2:]) for r in rows}


async def _devices_present(store: SimulatedStore) -> dict[int, float]:
    rows = await store.fetch(
        "SELECT extract(epoch FROM bucket_start)::int AS bucket, devices_present FROM footfall.footfall WHERE zone_id = '*'"
    )
    return {r["bucket"]: r["devices_present"] for r in rows}


async def test_visits_zones_and_counts_equal_the_truth_of_three_simulated_days(pool):
    scenario = Scenario.generate(two_sensor_shop(), WEEK)
    store = await SimulatedStore.create(pool, scenario.layout)
    await store.send(scenario.batches(batch_s=900), analytics_every=2)  # a round per 15 minutes of data, as live

    truth = scenario.truth_visits()
    expected = {
        _visit_key(
            v.started_s, v.ended_s, tuple(v.trajectory), v.is_visitor, v.is_passerby, v.is_stationary, v.is_returning
        )
        for v in truth
    }
    assert await _visits(store) == expected
    kinds = defaultdict(int)
    for v in truth:
        kinds["returning" if v.is_returning else "visitor" if v.is_visitor else "passerby" if v.is_passerby else "stationary"] += 1
    assert kinds["returning"] >= 3 and kinds["stationary"] == 15 and kinds["visitor"] >= 90  # the scenario has all kinds

    assert await _footfall(store) == scenario.truth_footfall()

    # Devices present: the estimator counts a phone from its first to its last probe in the band,
    # the truth from entering the zone to leaving it (up to a probe interval later): about 5 % fewer.
    present, truth_present = await _devices_present(store), scenario.truth_devices_present()
    assert abs(sum(present.values()) - sum(truth_present.values())) <= 0.10 * sum(truth_present.values())
    assert max(abs(present.get(b, 0.0) - truth_present.get(b, 0.0)) for b in present | truth_present) <= 1.0

    identities = await store.fetch(
        "SELECT count(DISTINCT visitor_id) AS visitors, count(*) AS macs FROM footfall.wifi_identities"
    )
    assert identities[0]["macs"] > identities[0]["visitors"]  # rotating MACs joined into phones


async def _edge_day(pool, seed: int, staff: int) -> tuple[SimulatedStore, Scenario]:
    """One day of 60 visitors and 120 passers-by, 70 % randomised phones rotating every 10 minutes,
    sent through the real edge path: the edge's fingerprints and linker, noisy RSSI."""
    config = ScenarioConfig(
        first_day=date(2024, 3, 5), visitors_per_day=60, passersby_per_day=120, staff=staff, fixed_devices=staff, seed=seed
    )
    scenario = Scenario.generate(two_sensor_shop(), config)
    store = await SimulatedStore.create(pool, scenario.layout)
    await store.send(edge_batches(scenario, max_events=400), analytics_every=4)
    return store, scenario


async def _presence_ratio(store: SimulatedStore, scenario: Scenario) -> float:
    present, truth_present = await _devices_present(store), scenario.truth_devices_present()
    buckets = sorted(truth_present)
    r = statistics.correlation([present.get(b, 0.0) for b in buckets], [truth_present[b] for b in buckets])
    assert r >= 0.9, r
    return sum(present.values()) / sum(truth_present.values())


@pytest.mark.parametrize("seed", [5, 6, 7])
async def test_with_randomised_macs_through_the_real_edge_path_devices_present_is_within_10_percent(pool, seed):
    store, scenario = await _edge_day(pool, seed, staff=0)
    ratio = await _presence_ratio(store, scenario)
    assert 0.9 <= ratio <= 1.1, ratio  # measured: 0.93-0.94 (the estimator ends presence at the last probe)
    entries = await store.fetch("SELECT sum(entries) AS n FROM footfall.footfall WHERE zone_id = '*'")
    assert entries[0]["n"] == sum(c.direction == "in" for c in scenario.crossings())


STAFF_LINK_GAP = pytest.mark.xfail(
    strict=True,
    reason="edge linker: customers' phones of a staff phone's model still join the staff cluster (likely before the staff MAC "
    "has been on air for stable_mac_s) and are excluded with it as stationary (0.867; 0.766 before stable_mac_s). "
    "An RSSI bound on the single-candidate rule does not cure it and splits the real Polimi phones; likely cure: "
    "undo a link once both MACs are heard at once, on the edge and in the collector's identity merge",
)


@pytest.mark.parametrize("seed", [pytest.param(6, marks=STAFF_LINK_GAP), 7])
async def test_with_staff_phones_of_popular_models_devices_present_is_within_10_percent(pool, seed):
    store, scenario = await _edge_day(pool, seed, staff=2)
    ratio = await _presence_ratio(store, scenario)
    assert 0.9 <= ratio <= 1.1, ratio  # measured: seed 7 0.908 (0.794 before the linker's stable_mac_s)
