"""Devices present: how many real devices were in a zone, per time bucket.

A phone does not probe continuously: it sends a burst, then may stay silent
for minutes while its owner stands in the shop. So a device counts as present
from one in-band sighting to the next when they are less than ``gap_s`` apart
(its *presence interval*), and a bucket's figure is the mean, over its
``resolution_s`` steps, of the devices whose interval touches the step. That
is an occupancy — what a person counting heads every minute would report —
rather than the number of devices heard at least once in the bucket, which
grows with how chatty phones are. Devices are site-wide ids
(:class:`~collector.analytics.devices.DeviceIndex`), so a phone heard by two
sensors counts once; a sighting is in the zone when its loudest frame reaches
``band_dbm`` (sensors that report no signal strength count as in the zone).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from collector.analytics.devices import DeviceSighting


@dataclass(frozen=True)
class PresenceConfig:
    bucket_s: int = field(default=300, metadata={"help": "bucket length, seconds (the footfall table uses 300)"})
    band_dbm: int = field(default=-65, metadata={"help": "weakest RSSI of the zone, dBm (Aruba's visitor band: -65)"})
    gap_s: int = field(default=300, metadata={"help": "silences shorter than this keep a device present, seconds"})
    resolution_s: int = field(default=60, metadata={"help": "step of the occupancy average, seconds"})

    def __post_init__(self) -> None:
        if self.resolution_s < 1 or self.bucket_s % self.resolution_s:
            raise ValueError("bucket_s must be a positive multiple of resolution_s")
        if self.gap_s < 0:
            raise ValueError("gap_s must not be negative")


Interval = tuple[float, float]


def presence_intervals(
    sightings: Iterable[DeviceSighting],
    device_of: Callable[[int, int], int],
    config: PresenceConfig = PresenceConfig(),
) -> dict[int, list[Interval]]:
    """Per device, its in-band time, silences shorter than ``gap_s`` bridged."""
    spans: dict[int, list[Interval]] = defaultdict(list)
    for s in sightings:
        if s.rssi_max is None or s.rssi_max >= config.band_dbm:
            spans[device_of(s.key_epoch, s.pseudonym)].append((s.start_s, s.start_s + s.window_s))
    merged: dict[int, list[Interval]] = {}
    for device, device_spans in spans.items():
        device_spans.sort()
        intervals = [device_spans[0]]
        for start_s, end_s in device_spans[1:]:
            last_start_s, last_end_s = intervals[-1]
            if start_s - last_end_s < config.gap_s:
                intervals[-1] = (last_start_s, max(last_end_s, end_s))
            else:
                intervals.append((start_s, end_s))
        merged[device] = intervals
    return merged


def devices_present(
    intervals: dict[int, list[Interval]],
    start_s: int,
    end_s: int,
    config: PresenceConfig = PresenceConfig(),
    exclude: Collection[int] = (),
) -> dict[int, float]:
    """Bucket start → mean devices present over the bucket's steps within ``[start_s, end_s)``.

    ``exclude`` holds devices left out, e.g. the stationary ones.
    """
    step_s = config.resolution_s
    present: dict[int, int] = defaultdict(int)
    for device, device_intervals in intervals.items():
        if device in exclude:
            continue
        steps: set[int] = set()
        for interval_start_s, interval_end_s in device_intervals:  # half-open: the end step is not touched
            steps.update(range(int(interval_start_s // step_s), int(-(-interval_end_s // step_s))))
        for step in steps:
            present[step] += 1
    per_bucket: dict[int, list[int]] = defaultdict(list)
    for step in range(start_s // step_s, -(-end_s // step_s)):
        per_bucket[step * step_s // config.bucket_s * config.bucket_s].append(present.get(step, 0))
    return {bucket: sum(counts) / len(counts) for bucket, counts in sorted(per_bucket.items())}
