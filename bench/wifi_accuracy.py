"""How many devices does the Wi-Fi path count, against ground truth — and against counting MACs.

Runs the real edge path (parse → pseudonymise → sightings → MAC linker, one
``WifiPath`` per sensor, all sensors in one key group) over the real captures
in ``../shared/data/wifi`` and then the collector's estimator
(``collector.analytics``: cross-sensor device merge, presence, stationary
devices). Every figure has the naive baseline — distinct MACs — beside it.

* Polimi: each file holds ONE phone (truth 1). Then all files merged into one
  stream, each timeline shifted to start at the same instant (truth = files).
  The dataset re-randomised every MAC, so the locally-administered bit means
  nothing there and the linker is told to link universal MACs too.
* Brno: per day, the Pearson r between devices present per 5-minute bucket
  (both sensors of the day merged) and the hand-labelled occupancy; the
  naive baseline is distinct MACs per bucket. The first ``gap_s`` after a
  day's capture starts are a warm-up and not compared: a phone counts as
  present from its first probe on, so right after the sensor starts everyone
  who has not probed yet is missing (a sensor that runs all day has no such
  edge). The empty Saturday 2024-03-23 shows what stationary devices (desktop
  PCs probing all day) add at any signal strength, and that they are flagged.

    .venv/bin/python bench/wifi_accuracy.py [--band-dbm -65] [--gap-s 300] [--min-hours 6]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import heapq
import os
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from collector.analytics.devices import DeviceIndex, DeviceSighting
from collector.analytics.presence import PresenceConfig, devices_present, presence_intervals
from collector.analytics.stationary import StationaryConfig, stationary_devices
from edge_agent.wifi.linker import LinkerConfig
from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.pipeline import WifiPath

_REPO_ROOT = Path(__file__).resolve().parent.parent
EMPTY_DAY = "2024-03-23"
Frame = tuple[float, int, bytes]


def sightings_of(sensor: str, frames: Iterator[Frame], linker: LinkerConfig) -> list[DeviceSighting]:
    """One sensor: every frame through the real edge path, closed windows as analytics rows."""
    path = WifiPath.for_benchmark(linker=linker)
    for timestamp_s, linktype, frame in frames:
        path.add_frame(timestamp_s, linktype, frame)
    return [
        DeviceSighting(sensor, window.epoch, row.start_s, window.window_s, row.pseudonym, row.cluster, row.rssi_max)
        for window in path.flush_all()
        for row in window.rows
    ]


def shifted(capture: Path, to_start_s: float) -> Iterator[Frame]:
    """A capture's frames with its timeline moved to begin at ``to_start_s``."""
    first_s = min(timestamp_s for timestamp_s, _, _ in open_capture(capture))
    for timestamp_s, linktype, frame in open_capture(capture):
        yield timestamp_s - first_s + to_start_s, linktype, frame


class Count(NamedTuple):
    devices: int
    macs: int


def count_devices(sightings: list[DeviceSighting]) -> Count:
    index = DeviceIndex(sightings)
    devices = {index.device_of(s.key_epoch, s.pseudonym) for s in sightings}
    return Count(len(devices), len({s.pseudonym for s in sightings}))


def polimi(data_dir: Path, linker: LinkerConfig) -> bool:
    captures = sorted((data_dir / "wifi" / "polimi").glob("*.pcap"))
    linker = dataclasses.replace(linker, link_universal_macs=True)  # the dataset re-randomised every MAC
    print("Polimi — one phone per file (truth 1 each); MACs re-randomised by the dataset\n")
    print(f"{'file':<34}{'truth':>6}{'estimate':>10}{'naive (MACs)':>14}")
    passed = True
    for capture in captures:
        count = count_devices(sightings_of("s1", open_capture(capture), linker))
        passed &= count.devices <= 2
        print(f"{capture.name:<34}{1:>6}{count.devices:>10}{count.macs:>14}")
    start_s = 1_700_000_000.0
    merged = heapq.merge(*(shifted(capture, start_s) for capture in captures), key=lambda frame: frame[0])
    count = count_devices(sightings_of("s1", merged, linker))
    truth = len(captures)
    passed &= abs(count.devices - truth) <= 2
    print(f"{'all merged, timelines overlapping':<34}{truth:>6}{count.devices:>10}{count.macs:>14}\n")
    return passed


def read_occupancy(paths: list[Path], bucket_s: int) -> dict[int, float]:
    """Bucket start → mean labelled occupancy over the bucket's labelled minutes (sensors of a day agree)."""
    minutes: dict[int, int] = {}
    for path in paths:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                minute_s = int(dt.datetime.fromisoformat(row["minute_utc"].replace("Z", "+00:00")).timestamp())
                minutes[minute_s] = int(row["occupancy"])
    per_bucket: dict[int, list[int]] = defaultdict(list)
    for minute_s, occupancy in minutes.items():
        per_bucket[minute_s // bucket_s * bucket_s].append(occupancy)
    return {bucket: statistics.fmean(values) for bucket, values in sorted(per_bucket.items())}


def distinct_macs(sightings: list[DeviceSighting], bucket_s: int) -> dict[int, int]:
    per_bucket: dict[int, set[int]] = defaultdict(set)
    for s in sightings:
        per_bucket[s.start_s // bucket_s * bucket_s].add(s.pseudonym)
    return {bucket: len(macs) for bucket, macs in per_bucket.items()}


def pearson(estimate: dict[int, float], truth: dict[int, float]) -> float | None:
    """Pearson r over the labelled buckets; ``None`` when the truth does not vary (the empty day)."""
    buckets = sorted(truth)
    truth_values = [truth[b] for b in buckets]
    if len(set(truth_values)) < 2:
        return None
    return statistics.correlation([float(estimate.get(b, 0.0)) for b in buckets], truth_values)


class DayResult(NamedTuple):
    day: str
    sensors: int
    r_estimate: float | None
    r_naive: float | None
    mean_estimate: float
    mean_with_stationary: float
    mean_naive: float
    mean_truth: float
    stationary: int
    #: Devices present at any signal strength, with and without the stationary ones.
    mean_any_rssi: float
    mean_any_rssi_without_stationary: float


def brno_day(
    day: str, captures: list[Path], linker: LinkerConfig, presence: PresenceConfig, stationary: StationaryConfig
) -> DayResult:
    """One day: each capture is a sensor (its position), all in one key group."""
    sightings = [
        s for capture in captures for s in sightings_of(capture.stem.split("_", 1)[1], open_capture(capture), linker)
    ]
    index = DeviceIndex(sightings)
    intervals = presence_intervals(sightings, index.device_of, presence)
    fixed = stationary_devices(sightings, index.device_of, stationary)
    start_s = min(s.start_s for s in sightings)
    end_s = max(s.start_s + s.window_s for s in sightings)
    labels = read_occupancy([capture.with_suffix(".occupancy.csv") for capture in captures], presence.bucket_s)
    truth = {bucket: occupancy for bucket, occupancy in labels.items() if bucket >= start_s + presence.gap_s}
    estimate = devices_present(intervals, start_s, end_s, presence, exclude=fixed)
    with_stationary = devices_present(intervals, start_s, end_s, presence)
    any_rssi = dataclasses.replace(presence, band_dbm=-120)
    any_intervals = presence_intervals(sightings, index.device_of, any_rssi)
    naive = distinct_macs(sightings, presence.bucket_s)

    def labelled_mean(series: dict[int, float] | dict[int, int]) -> float:
        return statistics.fmean(series.get(bucket, 0) for bucket in truth)

    return DayResult(
        day,
        len(captures),
        pearson(estimate, truth),
        pearson({b: float(n) for b, n in naive.items()}, truth),
        labelled_mean(estimate),
        labelled_mean(with_stationary),
        labelled_mean(naive),
        statistics.fmean(truth.values()),
        len(fixed),
        labelled_mean(devices_present(any_intervals, start_s, end_s, any_rssi)),
        labelled_mean(devices_present(any_intervals, start_s, end_s, any_rssi, exclude=fixed)),
    )


def brno(data_dir: Path, linker: LinkerConfig, presence: PresenceConfig, stationary: StationaryConfig) -> bool:
    by_day: dict[str, list[Path]] = defaultdict(list)
    for capture in sorted((data_dir / "wifi" / "brno").glob("*.pcap")):
        by_day[capture.name.split("_", 1)[0]].append(capture)
    print(
        f"Brno — devices present per {presence.bucket_s // 60}-minute bucket vs labelled occupancy "
        f"(band >= {presence.band_dbm} dBm, gaps < {presence.gap_s} s bridged, "
        f"stationary = heard in >= {stationary.min_hours} hours)\n"
    )
    header = (
        f"{'day':<12}{'sensors':>8}{'r estimate':>12}{'r naive':>9}{'gain':>7}"
        f"{'mean est':>10}{'+stationary':>12}{'naive MACs':>11}{'truth':>7}{'stationary':>11}"
    )
    print(header)
    print("-" * len(header))
    results = [brno_day(day, captures, linker, presence, stationary) for day, captures in sorted(by_day.items())]
    for result in results:
        if result.r_estimate is None or result.r_naive is None:
            figures = f"{'n/a':>12}{'n/a':>9}{'':>7}"
        else:
            figures = f"{result.r_estimate:>12.3f}{result.r_naive:>9.3f}{result.r_estimate - result.r_naive:>+7.3f}"
        print(
            f"{result.day:<12}{result.sensors:>8}{figures}"
            f"{result.mean_estimate:>10.1f}{result.mean_with_stationary:>12.1f}"
            f"{result.mean_naive:>11.1f}{result.mean_truth:>7.1f}{result.stationary:>11}"
        )
    labelled = [r for r in results if r.r_estimate is not None and r.r_naive is not None]
    mean_r = statistics.fmean(r.r_estimate for r in labelled)  # type: ignore[misc]
    mean_naive = statistics.fmean(r.r_naive for r in labelled)  # type: ignore[misc]
    print("-" * len(header))
    label = f"mean of {len(labelled)} labelled days"
    print(f"{label:<20}{mean_r:>12.3f}{mean_naive:>9.3f}{mean_r - mean_naive:>+7.3f}")
    empty = next(r for r in results if r.day == EMPTY_DAY)
    print(
        f"\nempty day {EMPTY_DAY} (truth 0): {empty.stationary} devices flagged stationary. In the band: "
        f"{empty.mean_estimate:.1f} devices present on average without them, "
        f"{empty.mean_with_stationary:.1f} with them. At any signal strength: {empty.mean_any_rssi:.1f} present, "
        f"all but {empty.mean_any_rssi_without_stationary:.1f} of them flagged stationary; "
        f"naive {empty.mean_naive:.1f} MACs per bucket\n"
    )
    return mean_r >= 0.85 and mean_r - mean_naive >= 0.10 and empty.stationary > 0 and empty.mean_estimate < 1.0


def main() -> int:
    defaults = PresenceConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--band-dbm", type=int, default=defaults.band_dbm, help="weakest RSSI counted as present")
    parser.add_argument("--gap-s", type=int, default=defaults.gap_s, help="silences bridged within one presence")
    parser.add_argument("--min-hours", type=int, default=StationaryConfig().min_hours, help="hours heard = stationary")
    parser.add_argument("--no-linking", action="store_true", help="count every MAC as a device (ablation)")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("FOOTFALL_REAL_DATA", _REPO_ROOT.parent / "shared" / "data"))
    if not (data_dir / "wifi").is_dir():
        print(f"real data not found under {data_dir} (set FOOTFALL_REAL_DATA)", file=sys.stderr)
        return 2
    linker = LinkerConfig(enabled=not args.no_linking)
    presence = PresenceConfig(band_dbm=args.band_dbm, gap_s=args.gap_s)
    polimi_ok = polimi(data_dir, linker)
    brno_ok = brno(data_dir, linker, presence, StationaryConfig(min_hours=args.min_hours))
    print(f"targets: Polimi {'met' if polimi_ok else 'NOT met'}; Brno {'met' if brno_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
