"""The real Brno lab days through the whole system: agent replay → broker → collector → analytics tables.

One site per day, one agent per sniffer position; the two positions of a day
share one pseudonym key (a key group), as sensors of one site do. The
collector's analytics task fills ``footfall`` while the agents replay; then:

* site-wide ``devices_present`` per 5-minute bucket against the labelled
  occupancy: mean Pearson r over the labelled days (the first ``presence_gap_s``
  of each capture is a warm-up and not compared, as in bench/wifi_accuracy.py);
* on the two-position days, every sighting of a phone heard by both sniffers
  lies in exactly one visit of one visitor, and visitors' trajectories move
  between the two positions' zones.
"""

from __future__ import annotations

import csv
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from shared.devstack.system import LocalSystem
from tests.e2e.conftest import fetch
from tests.realdata import require_real_data

pytestmark = pytest.mark.slow

LABELLED_DAYS = {"2022-11-22": 1, "2023-02-21": 1, "2024-02-29": 2, "2024-03-14": 2}
WARM_UP_S = 300


def _site(day: str) -> str:
    return f"lab-{day}"


def _provision_day(system: LocalSystem, day: str, positions: int) -> list[tuple[Path, Path]]:
    """(agent config, capture) per position; position 2 gets position 1's pseudonym key (one key group)."""
    system.add_site(_site(day), "Europe/Prague", name=f"Brno lab {day}")
    agents = []
    for position in range(1, positions + 1):
        device = f"pos{position}"
        if position > 1:
            state_dir = system.workdir / f"agent-{_site(day)}-{device}"
            state_dir.mkdir(parents=True)
            shutil.copy(system.workdir / f"agent-{_site(day)}-pos1" / "pseudonym.key", state_dir / "pseudonym.key")
        config = system.provision_device(_site(day), device, day)
        agents.append((config, require_real_data(f"wifi/brno/{day}_position_{position}.pcap")))
    return agents


def _occupancy(day: str) -> dict[int, float]:
    """Bucket start → mean labelled occupancy of its minutes (both positions of a day agree)."""
    path = require_real_data(f"wifi/brno/{day}_position_1.occupancy.csv")
    minutes: dict[int, list[int]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            minute_s = int(datetime.fromisoformat(row["minute_utc"].replace("Z", "+00:00")).timestamp())
            minutes[minute_s // 300 * 300].append(int(row["occupancy"]))
    return {bucket: statistics.fmean(values) for bucket, values in minutes.items()}


def _wait_for_analytics(dsn: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while fetch(dsn, "SELECT count(*) AS n FROM footfall.analytics_dirty")[0]["n"]:
        assert time.monotonic() < deadline, "analytics did not catch up"
        time.sleep(0.5)
    time.sleep(2.0)  # a round that took the last buckets may still be committing


def test_brno_days_through_the_whole_system(system: LocalSystem, pg_dsn: str) -> None:
    agents = [agent for day, positions in LABELLED_DAYS.items() for agent in _provision_day(system, day, positions)]
    system.start_collector("c1")
    for config, capture in agents:  # one at a time: two cores are shared with the collector and PostgreSQL
        replay = subprocess.run(
            system.agent_replay_command(config, capture, speed="max", wait_acked_s=180), capture_output=True, text=True
        )
        assert replay.returncode == 0, replay.stderr[-3000:]
    _wait_for_analytics(pg_dsn)

    correlations = {}
    for day in LABELLED_DAYS:
        rows = fetch(
            pg_dsn,
            "SELECT extract(epoch FROM bucket_start)::bigint AS bucket, devices_present FROM footfall.footfall"
            " WHERE site_id = $1 AND zone_id = '*'",
            _site(day),
        )
        present = {r["bucket"]: r["devices_present"] for r in rows}
        first_s = fetch(
            pg_dsn, "SELECT extract(epoch FROM min(window_start))::bigint AS t FROM footfall.wifi_sightings WHERE site_id = $1", _site(day)
        )[0]["t"]
        truth = {b: o for b, o in _occupancy(day).items() if b >= first_s + WARM_UP_S}
        buckets = sorted(truth)
        correlations[day] = statistics.correlation([present.get(b, 0.0) for b in buckets], [truth[b] for b in buckets])
    print("Pearson r per day:", {day: round(r, 3) for day, r in correlations.items()})
    assert statistics.fmean(correlations.values()) >= 0.85, correlations

    for day, positions in LABELLED_DAYS.items():
        if positions == 2:
            _check_one_visitor_across_both_sensors(pg_dsn, _site(day))


def _check_one_visitor_across_both_sensors(dsn: str, site_id: str) -> None:
    # Every sighting of a MAC both sniffers heard lies in exactly one visit, of the visitor its MAC belongs to.
    misplaced = fetch(
        dsn,
        """WITH both_heard AS (
               SELECT key_epoch, pseudonym FROM footfall.wifi_sightings WHERE site_id = $1
               GROUP BY key_epoch, pseudonym HAVING count(DISTINCT device_id) = 2
           )
           SELECT w.window_start, w.pseudonym, count(v.visit_id) AS visits
           FROM footfall.wifi_sightings w
           JOIN both_heard USING (key_epoch, pseudonym)
           JOIN footfall.wifi_identities i ON i.site_id = w.site_id AND i.key_epoch = w.key_epoch AND i.pseudonym = w.pseudonym
           LEFT JOIN footfall.visits v ON v.site_id = w.site_id AND v.key_epoch = w.key_epoch AND v.visitor_id = i.visitor_id
                AND w.window_start >= v.started_at AND w.window_start < v.ended_at
           WHERE w.site_id = $1 AND w.rssi_max >= -90
           GROUP BY w.window_start, w.pseudonym, w.device_id HAVING count(v.visit_id) <> 1""",
        site_id,
    )
    assert misplaced == []
    shared = fetch(
        dsn,
        """SELECT count(DISTINCT pseudonym) AS macs FROM (
               SELECT pseudonym FROM footfall.wifi_sightings WHERE site_id = $1
               GROUP BY key_epoch, pseudonym HAVING count(DISTINCT device_id) = 2) m""",
        site_id,
    )[0]["macs"]
    assert shared > 100  # the check above is not vacuous
    # Visitors' trajectories move between the two positions, both ways.
    flows = {
        (r["from_zone"], r["to_zone"]): r["visits"]
        for r in fetch(dsn, "SELECT from_zone, to_zone, sum(visits)::int AS visits FROM footfall.zone_flows"
                            " WHERE site_id = $1 GROUP BY 1, 2", site_id)
    }  # fmt: skip
    print(f"{site_id}: {shared} MACs heard by both sniffers, each in one visit of one visitor; visits moving", flows)
    assert flows.get(("pos1", "pos2"), 0) >= 5 and flows.get(("pos2", "pos1"), 0) >= 5, flows
