"""The footfall table: per site, zone and 5-minute bucket, what arrived and who was there.

Counts are of *arrivals* in the bucket — visits that started (site row ``*``),
zones first entered by a visit (zone rows), door crossings — so they add up to
hours and days without double counting. ``devices_present`` is the bucket's
mean occupancy (:mod:`collector.analytics.presence`). A row whose every figure
is zero is not stored: a missing row reads as zeros, and the table holds the
same rows whatever order the data arrived in.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from collector.analytics.zones import WHOLE_SITE

BUCKET_S = 300


def bucket_of(epoch_s: float) -> int:
    return int(epoch_s // BUCKET_S * BUCKET_S)


@dataclass(frozen=True)
class VisitSummary:
    """What the footfall rows need of one visit."""

    started_s: int
    dwell_s: int
    is_visitor: bool
    is_passerby: bool
    is_returning: bool
    #: zone_id → (first entry, total time in the zone), seconds.
    zones: Mapping[str, tuple[int, int]]


class FootfallRow(NamedTuple):
    zone_id: str
    bucket_start_s: int
    entries: int | None
    exits: int | None
    passersby: int
    visitors: int
    new_visitors: int
    returning_visitors: int
    devices_present: float
    dwell_median_s: float | None
    capture_rate: float | None


class _Arrivals:
    """Visits arriving in one (zone, bucket)."""

    __slots__ = ("passersby", "visitors", "returning", "dwells_s")

    def __init__(self) -> None:
        self.passersby = 0
        self.visitors = 0
        self.returning = 0
        self.dwells_s: list[int] = []

    def add(self, visit: VisitSummary, dwell_s: int) -> None:
        if visit.is_passerby:
            self.passersby += 1
        elif visit.is_visitor:
            self.visitors += 1
            self.returning += visit.is_returning
            self.dwells_s.append(dwell_s)


def footfall_rows(
    bucket_starts: Iterable[int],
    visits: Iterable[VisitSummary],
    crossings: Mapping[int, tuple[int, int]],
    passerby_counts: Mapping[int, int],
    presence: Mapping[str, Mapping[int, float]],
) -> list[FootfallRow]:
    """The rows of ``bucket_starts``.

    ``visits`` may include visits that arrived outside those buckets (they are
    skipped); ``crossings`` maps a bucket to (in, out); ``passerby_counts`` to
    the passers-by the edge reported as counts only; ``presence`` maps a zone
    (``*`` for the site) to devices present per bucket.
    """
    wanted = set(bucket_starts)
    arrivals: dict[tuple[str, int], _Arrivals] = {}

    def arrival(zone_id: str, epoch_s: int) -> _Arrivals | None:
        bucket = bucket_of(epoch_s)
        if bucket not in wanted:
            return None
        return arrivals.setdefault((zone_id, bucket), _Arrivals())

    for visit in visits:
        site = arrival(WHOLE_SITE, visit.started_s)
        if site is not None:
            site.add(visit, visit.dwell_s)
        for zone_id, (entered_s, zone_dwell_s) in visit.zones.items():
            zone = arrival(zone_id, entered_s)
            if zone is not None:
                zone.add(visit, zone_dwell_s)

    zones = {zone_id for zone_id, _ in arrivals} | set(presence) | {WHOLE_SITE}
    rows = []
    for zone_id in sorted(zones):
        for bucket in sorted(wanted):
            counted = arrivals.get((zone_id, bucket), _Arrivals())
            present = presence.get(zone_id, {}).get(bucket, 0.0)
            entries = exits = None
            passersby = counted.passersby
            if zone_id == WHOLE_SITE:
                entries, exits = crossings.get(bucket, (0, 0))
                passersby += passerby_counts.get(bucket, 0)
            if not (entries or exits or passersby or counted.visitors or present):
                continue
            seen = counted.visitors + passersby
            rows.append(
                FootfallRow(
                    zone_id=zone_id,
                    bucket_start_s=bucket,
                    entries=entries,
                    exits=exits,
                    passersby=passersby,
                    visitors=counted.visitors,
                    new_visitors=counted.visitors - counted.returning,
                    returning_visitors=counted.returning,
                    devices_present=present,
                    dwell_median_s=float(statistics.median(counted.dwells_s)) if counted.dwells_s else None,
                    capture_rate=counted.visitors / seen if seen else None,
                )
            )
    return rows
