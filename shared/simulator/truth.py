"""What really happened in a simulated store: the figures the tables must show.

Stated from the people and their paths, not from sightings: a visit runs from
a person's first probe tick to one window after the last; a zone is entered at
the first tick spent there and left when the next zone is entered; customers
whose inside stay is long enough are visitors, browsers and people on the
street are passers-by, staff and fixed devices are stationary. A visit is cut
where the pseudonym key rotates (the phone gets new pseudonyms: by design,
nobody can join the two halves). The generator
makes the thresholds hold with a margin (e.g. every visitor spends at least
310 s in the visitor band, every browser at most 190 s).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from shared.simulator.layout import StoreLayout
from shared.simulator.people import Person

BUCKET_S = 300
WHOLE_SITE = "*"


class ZoneStay(NamedTuple):
    zone_id: str
    entered_s: int
    exited_s: int


@dataclass(frozen=True)
class TruthVisit:
    person_id: int
    phone_id: int
    started_s: int
    ended_s: int
    trajectory: tuple[ZoneStay, ...]
    is_visitor: bool
    is_passerby: bool
    is_stationary: bool
    is_returning: bool

    @property
    def dwell_s(self) -> int:
        return self.ended_s - self.started_s

    def zone_firsts(self) -> dict[str, tuple[int, int]]:
        """zone_id → (first entry, total time there)."""
        out: dict[str, tuple[int, int]] = {}
        for stay in self.trajectory:
            first_s, total_s = out.get(stay.zone_id, (stay.entered_s, 0))
            out[stay.zone_id] = (first_s, total_s + stay.exited_s - stay.entered_s)
        return out


class Crossing(NamedTuple):
    t: float
    direction: str


class TruthRow(NamedTuple):
    entries: int | None
    exits: int | None
    passersby: int
    visitors: int
    new_visitors: int
    returning_visitors: int
    dwell_median_s: float | None


def _local_day(epoch_s: int, time_zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(epoch_s, timezone.utc).astimezone(time_zone).date()


def truth_visits(layout: StoreLayout, people: Iterable[Person], key_period_s: int) -> list[TruthVisit]:
    time_zone = ZoneInfo(layout.time_zone)
    visits = []
    first_visitor_day: dict[tuple[int, int], date] = {}
    for person, ticks in sorted(
        ((p, epoch_ticks) for p in people if p.phone for epoch_ticks in _by_key_epoch(p.ticks(), key_period_s)),
        key=lambda item: item[1][0][0],
    ):
        ended_s = ticks[-1][0] + layout.window_s
        stays: list[list] = []
        for t, zone_id in ticks:
            if stays and stays[-1][0] == zone_id:
                continue
            if stays:
                stays[-1][2] = t
            stays.append([zone_id, t, ended_s])
        stationary = person.kind in ("staff", "fixed")
        visitor = person.kind == "visitor"
        returning = False
        assert person.phone is not None
        key = (person.phone.phone_id, ticks[0][0] // key_period_s)
        day = _local_day(ticks[0][0], time_zone)
        if visitor:
            returning = key in first_visitor_day and first_visitor_day[key] < day
            first_visitor_day.setdefault(key, day)
        visits.append(
            TruthVisit(
                person.person_id, person.phone.phone_id, ticks[0][0], ended_s,
                tuple(ZoneStay(*stay) for stay in stays), visitor, not visitor and not stationary, stationary, returning,
            )  # fmt: skip
        )
    return visits


def _by_key_epoch(ticks: list[tuple[int, str]], key_period_s: int) -> list[list[tuple[int, str]]]:
    """A person's ticks cut where the pseudonym key rotates: nobody can join a phone across that."""
    parts: list[list[tuple[int, str]]] = []
    for tick in ticks:
        if parts and parts[-1][0][0] // key_period_s == tick[0] // key_period_s:
            parts[-1].append(tick)
        else:
            parts.append([tick])
    return parts


def crossings(layout: StoreLayout, people: Iterable[Person]) -> list[Crossing]:
    """The door camera's count: one crossing between each outside and inside tick of a customer.

    Staff and fixed devices never cross the door line (staff use the back door).
    """
    out = []
    for person in people:
        if person.kind in ("staff", "fixed"):
            continue
        ticks = person.ticks()
        for (_, before), (t, after) in zip(ticks, ticks[1:]):
            was_inside, is_inside = layout.zone(before).inside, layout.zone(after).inside
            if was_inside != is_inside:
                out.append(Crossing(t - person.tick_s / 2, "in" if is_inside else "out"))
    return sorted(out)


def footfall(visits: Sequence[TruthVisit], door: Iterable[Crossing]) -> dict[tuple[str, int], TruthRow]:
    """(zone, bucket) → the arrivals the footfall table must show (devices_present aside)."""
    arrivals: dict[tuple[str, int], list[tuple[TruthVisit, int]]] = defaultdict(list)
    for visit in visits:
        arrivals[(WHOLE_SITE, visit.started_s // BUCKET_S * BUCKET_S)].append((visit, visit.dwell_s))
        for zone_id, (first_s, total_s) in visit.zone_firsts().items():
            arrivals[(zone_id, first_s // BUCKET_S * BUCKET_S)].append((visit, total_s))
    counted: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for crossing in door:
        counted[int(crossing.t // BUCKET_S * BUCKET_S)][crossing.direction == "out"] += 1
    rows = {}
    for key in set(arrivals) | {(WHOLE_SITE, bucket) for bucket in counted}:
        zone_id, bucket = key
        here = arrivals.get(key, [])
        visitors = [(v, dwell_s) for v, dwell_s in here if v.is_visitor]
        passersby = sum(v.is_passerby for v, _ in here)
        if not visitors and not passersby and zone_id != WHOLE_SITE:
            continue
        entries, exits = counted.get(bucket, (0, 0)) if zone_id == WHOLE_SITE else (None, None)
        if zone_id == WHOLE_SITE and not (visitors or passersby or entries or exits):
            continue
        returning = sum(v.is_returning for v, _ in visitors)
        rows[key] = TruthRow(
            entries, exits, passersby, len(visitors), len(visitors) - returning, returning,
            float(statistics.median(d for _, d in visitors)) if visitors else None,
        )  # fmt: skip
    return rows


def devices_present(visits: Iterable[TruthVisit], layout: StoreLayout, visitor_rssi_dbm: int, step_s: int = 60) -> dict[int, float]:
    """Bucket → mean over its minutes of phones (not stationary) in a zone inside the visitor band.

    A phone counts in a minute when its time in such a zone touches the minute,
    the counting rule of the devices-present estimator.
    """
    in_band = {z.zone_id for z in layout.zones if z.heard_dbm[z.device_id] >= visitor_rssi_dbm}
    per_step: dict[int, int] = defaultdict(int)
    for visit in visits:
        if visit.is_stationary:
            continue
        steps: set[int] = set()
        for stay in visit.trajectory:
            if stay.zone_id in in_band:
                steps.update(range(stay.entered_s // step_s, -(-stay.exited_s // step_s)))
        for step in steps:
            per_step[step] += 1
    per_bucket: dict[int, list[int]] = defaultdict(list)
    if per_step:
        for step in range(min(per_step) // (BUCKET_S // step_s) * (BUCKET_S // step_s), max(per_step) + 1):
            per_bucket[step * step_s // BUCKET_S * BUCKET_S].append(per_step.get(step, 0))
    return {bucket: sum(counts) / (BUCKET_S // step_s) for bucket, counts in per_bucket.items()}
