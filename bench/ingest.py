"""Collector throughput end to end — publisher → Mosquitto → collector → committed rows — beside raw COPY.

The brief's target: >= 100,000 sightings/s end to end on this machine and at
least 0.5x a raw asyncpg binary COPY of the same rows into the same table,
measured in the same run against the same PostgreSQL. The script starts its
own throwaway PostgreSQL and Mosquitto (shared/devstack) and a real
``footfall-collector run`` process, so it measures what an operator would
run, and prints its whole setup.

One end-to-end run: devices (fresh ids each run) publish pre-signed batches
over QoS 1; the clock runs from the first publish until the collector's
retained ack of every device's last batch arrives — the collector publishes
that only after the rows are committed. The row count is then checked in the
database. The anchor COPYs the very same rows (records built beforehand, so
it is the database's ceiling, not Python's) through one connection in chunks.
The table is truncated and checkpointed before every measurement; the best of
``--runs`` counts for each, so a noisy neighbour does not decide the figure.

The collector runs with analytics off: this measures ingest. Each run brings a
million devices never seen before into one 5-minute bucket, which costs the
analytics process (collector/analytics/worker.py) tens of seconds of CPU to
sessionise; on this 2-core machine that work would land on whichever
measurement came next. ``--with-analytics`` turns it on and waits for its
queue to drain before every measurement, so analytics competes with each
end-to-end run for the rows of that run only.

    .venv/bin/python bench/ingest.py [--runs 3] [--devices 4] [--batches-per-device 500]
                                     [--sightings-per-batch 500] [--no-durable] [--with-analytics]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.db.writer import SIGHTING_COLUMNS
from collector.registry import enroll_device
from shared.devstack import MosquittoBroker, ThrowawayPostgres
from shared.devstack.loadgen import synthetic_rows
from shared.devstack.system import LocalSystem
from shared.protocol import Batch, Sightings, decode_ack, encode_body, frame_message
from shared.signing import DeviceSigner
from shared.topics import ack_topic, batch_topic

SITE = "bench"
KEY_EPOCH = 1
ANCHOR_CHUNK_ROWS = 50_000
TARGET_SIGHTINGS_PER_S = 100_000
TARGET_RATIO = 0.5
#: The collector's default: one process checks every value beside the commit path (collector/checkers.py).
CHECK_WORKERS = 1


@dataclass(frozen=True)
class Device:
    device_id: str
    number: int
    signer: DeviceSigner


@dataclass(frozen=True)
class Workload:
    """The signed messages of one run and the COPY records of the same rows."""

    messages: dict[str, list[bytes]]
    records: list[tuple]

    @property
    def sightings(self) -> int:
        return len(self.records)


def build_workload(devices: list[Device], batches: int, sightings_per_batch: int) -> Workload:
    now_s = time.time()
    messages: dict[str, list[bytes]] = {}
    records: list[tuple] = []
    for device in devices:
        messages[device.device_id] = []
        for seq in range(1, batches + 1):
            rows = synthetic_rows(device.number, (seq - 1) * sightings_per_batch, sightings_per_batch, now_s)
            batch = Batch(SITE, device.device_id, seq, now_s, KEY_EPOCH, 1, sightings=Sightings(rows=rows, window_s=10))
            body = encode_body(batch)
            messages[device.device_id].append(frame_message(body, device.signer.sign(body)))
            for row in rows:
                start_s, pseudonym, *rest = row
                records.append(
                    (SITE, device.device_id, seq, datetime.fromtimestamp(start_s, timezone.utc), 10, pseudonym, KEY_EPOCH, *rest)
                )
    return Workload(messages, records)


class AckWatcher:
    """Notes when every device's retained ack reaches its last seq (the collector commits, then acks)."""

    def __init__(self, host: str, port: int, targets: dict[str, int]) -> None:
        self._targets = dict(targets)
        self._done = threading.Event()
        self.finished_s = 0.0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        for device_id in targets:
            self._client.subscribe(ack_topic(SITE, device_id), qos=1)
        self._client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        device_id = message.topic.split("/")[3]
        if device_id in self._targets and decode_ack(message.payload) >= self._targets[device_id]:
            del self._targets[device_id]
            if not self._targets:
                self.finished_s = time.perf_counter()
                self._done.set()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def publish(host: str, port: int, device_id: str, messages: list[bytes], go: threading.Event) -> None:
    """One device's publisher: QoS 1, paho keeps up to 100 messages in flight."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{device_id}", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    go.wait()
    topic = batch_topic(SITE, device_id)
    infos = [client.publish(topic, message, qos=1) for message in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


async def reset_table(dsn: str, drain_analytics: bool) -> None:
    """An empty table and a fresh checkpoint; with ``drain_analytics``, nothing left queued for analytics."""
    connection = await asyncpg.connect(dsn)
    try:
        while drain_analytics and await connection.fetchval("SELECT count(*) FROM footfall.analytics_dirty"):
            await asyncio.sleep(0.5)
        await connection.execute("TRUNCATE footfall.wifi_sightings")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def count_rows(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval("SELECT count(*) FROM footfall.wifi_sightings")
    finally:
        await connection.close()


def end_to_end(host: str, port: int, dsn: str, workload: Workload, drain_analytics: bool) -> float:
    """Seconds from the first publish until every batch is committed (acked by the collector)."""
    asyncio.run(reset_table(dsn, drain_analytics))
    watcher = AckWatcher(host, port, {device_id: len(batch) for device_id, batch in workload.messages.items()})
    go = threading.Event()
    threads = [
        threading.Thread(target=publish, args=(host, port, device_id, messages, go))
        for device_id, messages in workload.messages.items()
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # publishers connected
    started_s = time.perf_counter()
    go.set()
    try:
        if not watcher.wait(300):
            raise SystemExit("the collector did not acknowledge every batch within 300 s")
    finally:
        watcher.close()
        for thread in threads:
            thread.join()
    seconds = watcher.finished_s - started_s
    committed = asyncio.run(count_rows(dsn))
    if committed != workload.sightings:
        raise SystemExit(f"committed {committed} rows, sent {workload.sightings}: the bench is not measuring what it says")
    return seconds


async def raw_copy(dsn: str, records: list[tuple], drain_analytics: bool) -> float:
    """Seconds for one connection to binary-COPY ``records`` into wifi_sightings, chunk by chunk."""
    await reset_table(dsn, drain_analytics)
    connection = await asyncpg.connect(dsn)
    try:
        started_s = time.perf_counter()
        for start in range(0, len(records), ANCHOR_CHUNK_ROWS):
            await connection.copy_records_to_table(
                "wifi_sightings",
                schema_name="footfall",
                columns=SIGHTING_COLUMNS,
                records=records[start : start + ANCHOR_CHUNK_ROWS],
            )
        return time.perf_counter() - started_s
    finally:
        await connection.close()


async def enroll(dsn: str, devices: list[Device]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for device in devices:
            await enroll_device(connection, SITE, device.device_id, device.signer.public_key_bytes)
    finally:
        await connection.close()


def describe(pg: ThrowawayPostgres, dsn: str, args: argparse.Namespace, broker: MosquittoBroker) -> str:
    async def settings() -> str:
        connection = await asyncpg.connect(dsn)
        try:
            version = await connection.fetchval("SHOW server_version")
            values = [f"{name}={await connection.fetchval(f'SHOW {name}')}" for name in ("fsync", "synchronous_commit")]
            return f"PostgreSQL {version} ({', '.join(values)})"
        finally:
            await connection.close()

    mosquitto = subprocess.run([str(broker.binary), "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    total_batches = args.devices * args.batches_per_device
    return "\n".join(
        [
            f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}",
            f"database: {asyncio.run(settings())}, throwaway server at {pg.data_dir}",
            f"broker: {mosquitto}, max_inflight_messages={broker.max_inflight_messages}",
            "collector: one `footfall-collector run` process; ingest.flush_max_messages=500, flush_interval_ms=50,"
            " mqtt.receive_maximum=1000, limits.device_events_per_s=0 (bench devices send far above one real device);"
            + (
                " analytics on (its own process) with the default max_busy_share=0.25, drained before every measurement"
                if args.with_analytics
                else " analytics off (see the module docstring; --with-analytics)"
            )
            + f", ingest.check_workers={CHECK_WORKERS}",
            f"workload per run: {args.devices} devices x {args.batches_per_device} batches x"
            f" {args.sightings_per_batch} sightings = {total_batches} signed batches,"
            f" {total_batches * args.sightings_per_batch:,} sightings; publishers QoS 1 in this process",
            f"anchor: asyncpg copy_records_to_table of the same rows, one connection, {ANCHOR_CHUNK_ROWS:,} rows per COPY",
            f"best of {args.runs} runs each; table truncated and CHECKPOINTed before every measurement",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--batches-per-device", type=int, default=500)
    parser.add_argument("--sightings-per-batch", type=int, default=500)
    parser.add_argument("--no-durable", dest="durable", action="store_false", help="fsync and synchronous_commit off")
    parser.add_argument("--with-analytics", action="store_true", help="run the collector's analytics too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="footfall-bench-") as workdir, ThrowawayPostgres(
        durable=args.durable
    ) as pg, MosquittoBroker() as broker:
        dsn = pg.create_database("bench")
        system = LocalSystem(Path(workdir), dsn, broker.host, broker.port)
        system.migrate()
        system.add_site(SITE, "UTC")
        runs = [
            [Device(f"r{run}d{n}", run * 100 + n, DeviceSigner.generate()) for n in range(args.devices)]
            for run in range(args.runs)
        ]
        asyncio.run(enroll(dsn, [device for devices in runs for device in devices]))
        system.start_collector(
            "collector",
            limits={"device_events_per_s": 0},
            analytics={"enabled": args.with_analytics},
            ingest={"check_workers": CHECK_WORKERS},
        )
        print(describe(pg, dsn, args, broker), flush=True)
        try:
            e2e_rates, copy_rates = [], []
            for run, devices in enumerate(runs, 1):
                workload = build_workload(devices, args.batches_per_device, args.sightings_per_batch)
                e2e_s = end_to_end(broker.host, broker.port, dsn, workload, args.with_analytics)
                copy_s = asyncio.run(raw_copy(dsn, workload.records, args.with_analytics))
                e2e_rates.append(workload.sightings / e2e_s)
                copy_rates.append(workload.sightings / copy_s)
                print(
                    f"run {run}: end to end {e2e_rates[-1]:>10,.0f} sightings/s ({e2e_s:.2f} s)   "
                    f"raw COPY {copy_rates[-1]:>10,.0f} rows/s ({copy_s:.2f} s)",
                    flush=True,
                )
        finally:
            system.close()
    best_e2e, best_copy = max(e2e_rates), max(copy_rates)
    ratio = best_e2e / best_copy
    print(f"\n{'stage':<46}{'sightings/s':>14}{'target':>14}")
    print(f"{'end to end (publisher→Mosquitto→collector→PG)':<46}{best_e2e:>14,.0f}{TARGET_SIGHTINGS_PER_S:>14,}")
    print(f"{'raw asyncpg COPY of the same rows (anchor)':<46}{best_copy:>14,.0f}")
    print(f"{'ratio end to end / raw COPY':<46}{ratio:>14.2f}{TARGET_RATIO:>14}")
    met = best_e2e >= TARGET_SIGHTINGS_PER_S and ratio >= TARGET_RATIO
    print("targets met" if met else "TARGETS NOT MET")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
