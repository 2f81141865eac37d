"""``footfall demo``: the whole system on this machine in under two minutes.

Starts a throwaway PostgreSQL and an MQTT broker, migrates the schema, adds a
site, makes two devices' keys and enrolls them, starts a real collector
process, replays a real capture (or a synthetic one when ``../shared/data``
is absent) through one real agent process and a real door video through
another, and prints what the tables say.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from edge_agent.wifi.pcap import open_capture
from shared.devstack import ThrowawayPostgres, start_broker
from shared.devstack.synthetic_capture import write_synthetic_capture
from shared.devstack.system import LocalSystem

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CAPTURE = "wifi/brno/2022-11-22_position_1.pcap"
SITE_ID, DEVICE_ID, TIME_ZONE = "brno-lab", "sniffer-1", "Europe/Prague"
DEMO_VIDEO = "video/femb_peopleCounter.avi"
DOOR_ID = "door-1"
#: The femb door's installation settings: line across the middle, in = walking down the picture.
DOOR_CAMERA = {
    "line": {"id": "door", "points": [[0.0, 0.5], [1.0, 0.5]], "in_side": "bottom"},
    "person": {"width_frac": 0.11, "height_frac": 0.2},
}


def real_data_dir() -> Path:
    return Path(os.environ.get("FOOTFALL_REAL_DATA", REPO_ROOT.parent / "shared" / "data"))


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def choose_capture(workdir: Path) -> tuple[Path, str]:
    """The real Brno capture when present, else a synthetic one written into ``workdir``."""
    real = real_data_dir() / DEMO_CAPTURE
    if real.is_file():
        return real, "real capture, Brno University of Technology lab, 2022-11-22"
    synthetic = workdir / "synthetic.pcap"
    start_s = dt.datetime(2022, 11, 22, 9, tzinfo=dt.timezone.utc).timestamp()
    write_synthetic_capture(synthetic, start_s)
    return synthetic, f"synthetic capture (no real data at {real.parent.parent})"


def labelled_door_counts() -> dict[str, int] | None:
    """The hand-labelled in/out counts of the demo video, or None when the video is absent."""
    video = real_data_dir() / DEMO_VIDEO
    if not video.is_file():
        return None
    labels = json.loads((video.parent / "labels.json").read_text())[video.name]["counts"]
    return {"in": labels["down"], "out": labels["up"]}


def capture_facts(capture: Path) -> tuple[int, dt.date]:
    """Frames in the capture and the UTC day of its first frame (for the pseudonym key)."""
    frames, first_s = 0, None
    for timestamp_s, _linktype, _frame in open_capture(capture):
        frames += 1
        first_s = timestamp_s if first_s is None else min(first_s, timestamp_s)
    day = dt.datetime.fromtimestamp(first_s or 0, dt.timezone.utc).date()
    return frames, day


async def summarise(dsn: str, time_zone: str, capture_frames: int, door_labels: dict[str, int] | None) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        batches = await connection.fetchrow("SELECT count(*) AS n, coalesce(sum(sightings), 0) AS s FROM footfall.ingest_batches")
        rejects = await connection.fetchval("SELECT count(*) FROM footfall.ingest_rejects")
        totals = await connection.fetchrow(
            """SELECT count(*) AS rows, coalesce(sum(frames), 0) AS frames,
                      count(DISTINCT pseudonym) AS pseudonyms,
                      count(DISTINCT pseudonym) FILTER (WHERE randomized) AS randomized
               FROM footfall.wifi_sightings"""
        )
        hours = await connection.fetch(
            """SELECT date_trunc('hour', window_start AT TIME ZONE $1) AS hour,
                      count(*) AS rows, sum(frames) AS frames, count(DISTINCT pseudonym) AS pseudonyms,
                      round(avg(rssi_max)) AS rssi
               FROM footfall.wifi_sightings GROUP BY 1 ORDER BY 1""",
            time_zone,
        )
        device = await connection.fetchrow(
            "SELECT acked_seq, last_seen_at FROM footfall.devices WHERE device_id = $1", DEVICE_ID
        )
        crossings = dict(
            await connection.fetch("SELECT direction, count(*) FROM footfall.door_crossings GROUP BY direction")
        )
        await wait_for_analytics(connection)
        linked = await connection.fetchval(
            "SELECT count(DISTINCT coalesce(cluster, pseudonym)) FROM footfall.wifi_sightings"
        )
        visits = await connection.fetchrow(
            """SELECT count(*) AS n, count(*) FILTER (WHERE is_visitor) AS visitors,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY dwell_s) FILTER (WHERE is_visitor) AS dwell_s
               FROM footfall.visits"""
        )
        footfall = await connection.fetch(
            """SELECT local_hour, devices_present, devices_present_peak, visitors, passersby, entries, exits
               FROM footfall.footfall_hourly WHERE zone_id = '*' ORDER BY hour_start"""
        )
    finally:
        await connection.close()
    share = 100 * totals["randomized"] / totals["pseudonyms"] if totals["pseudonyms"] else 0
    lines = [
        f"ingest_batches   {batches['n']:>8,} committed   ({rejects} in ingest_rejects)",
        f"wifi_sightings   {totals['rows']:>8,} rows        {totals['frames']:,} probe requests "
        + ("(every frame of the capture accounted for)" if totals["frames"] == capture_frames else f"of {capture_frames:,} frames"),
        f"pseudonyms       {totals['pseudonyms']:>8,} distinct    ({share:.0f}% from randomised MACs: one phone can show many)",
        f"device acked_seq {device['acked_seq']:>8}",
        "",
        f"per hour ({time_zone})   sightings   frames   pseudonyms   mean max RSSI",
    ]
    for row in hours:
        lines.append(
            f"  {row['hour']:%Y-%m-%d %H:00}   {row['rows']:>9,}   {row['frames']:>6,}   {row['pseudonyms']:>10,}   {row['rssi']:>6} dBm"
        )
    dwell = f", median dwell {visits['dwell_s'] / 60:.0f} min" if visits["dwell_s"] is not None else ""
    lines += [
        "",
        f"analytics: {totals['pseudonyms']:,} MAC pseudonyms linked on the device into {linked:,} devices; "
        f"{visits['n']:,} visits, {visits['visitors']:,} of them visitors{dwell}",
        f"footfall_hourly ({time_zone})   devices present (mean / peak)   visitors   passers-by   entries   exits",
    ]
    for row in footfall:
        lines.append(
            f"  {row['local_hour']:%Y-%m-%d %H:00}   {row['devices_present']:>14.1f} / {row['devices_present_peak']:<8.1f}"
            f"   {row['visitors']:>8,}   {row['passersby']:>10,}   {row['entries']:>7,}   {row['exits']:>5,}"
        )
    if door_labels is not None:
        lines += [
            "",
            f"door_crossings   in {crossings.get('in', 0)} (hand label {door_labels['in']}),"
            f" out {crossings.get('out', 0)} (hand label {door_labels['out']})"
            " — the door video's crossings, timed as if it had just been recorded",
        ]
    return "\n".join(lines)


async def wait_for_analytics(connection: asyncpg.Connection, timeout_s: float = 60.0) -> None:
    """The collector recomputes aggregates in the background; wait until its work queue is empty."""
    deadline = time.monotonic() + timeout_s
    while await connection.fetchval("SELECT count(*) FROM footfall.analytics_dirty") and time.monotonic() < deadline:
        await asyncio.sleep(0.5)


def run_demo(workdir: Path) -> int:
    started = time.monotonic()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    capture, description = choose_capture(workdir)
    frames, day = capture_facts(capture)
    step(f"capture: {capture} — {description}, {frames:,} frames")
    step("starting a throwaway PostgreSQL and an MQTT broker")
    with ThrowawayPostgres(durable=False) as postgres, start_broker() as broker:
        dsn = postgres.create_database("footfall")
        system = LocalSystem(workdir, dsn, broker.host, broker.port, broker_speaks_mqtt5=broker.mqtt5)
        try:
            step("collector: migrate, add the site, enroll the device's public key")
            system.migrate()
            system.add_site(SITE_ID, TIME_ZONE, name="Brno lab (demo)")
            config = system.provision_device(SITE_ID, DEVICE_ID, day.isoformat())
            step("starting the collector process")
            system.start_collector("collector")
            step("replaying the capture through a real agent process (progress below)")
            replay = subprocess.run(system.agent_replay_command(config, capture, speed="max", wait_acked_s=60))
            if replay.returncode != 0:
                print("the agent did not get every batch acknowledged; see the log lines above", file=sys.stderr)
                return 1
            door_labels = labelled_door_counts()
            if door_labels is None:
                step(f"no door video at {real_data_dir() / DEMO_VIDEO}; skipping the camera")
            else:
                step(f"counting the door video {DEMO_VIDEO} through a second agent (camera)")
                door = system.provision_device(SITE_ID, DOOR_ID, day.isoformat(), camera=DOOR_CAMERA)
                video = real_data_dir() / DEMO_VIDEO
                replay = subprocess.run(system.agent_replay_command(door, video, wait_acked_s=60, kind="video"))
                if replay.returncode != 0:
                    print("the door agent did not get every batch acknowledged; see the log above", file=sys.stderr)
                    return 1
            step("what the tables now say")
            print(asyncio.run(summarise(dsn, TIME_ZONE, frames, door_labels)))
        finally:
            system.close()
    step(f"done in {time.monotonic() - started:.0f} s; configs and logs are in {workdir}")
    return 0
