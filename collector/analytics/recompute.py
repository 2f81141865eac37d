"""One analytics round for one site: its dirty buckets in; visits, trajectory and footfall out.

Everything happens in ONE transaction under a per-site advisory lock, so
several collectors can run analytics at once (one works on a site, the
others skip it) and a failed round rolls back with its buckets still queued:

1. take the site's dirty buckets (``DELETE … RETURNING``) and load their sightings;
2. record their (MAC, cluster, hour) rows and rebuild identity for the touched
   key epochs (:mod:`collector.analytics.identity`): merged devices and
   stationary flips are found here;
3. per affected visitor, re-sessionise exactly the stretch of time its new
   data can influence (:meth:`SiteRound._stretches`) and replace those visits
   and their trajectories;
4. refresh ``is_returning`` for those visitors;
5. recompute every footfall bucket whose inputs changed: the dirty buckets,
   the buckets of changed visits, and the presence margin around both;
6. close the visits the site's watermark has passed.

Because each step recomputes from raw rows, a late upload (yesterday's spool)
and an in-order run end in the same tables; ``tests/analytics`` checks that.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg

from collector.analytics.devices import DeviceSighting
from collector.analytics.footfall import BUCKET_S, FootfallRow, VisitSummary, bucket_of, footfall_rows
from collector.analytics.identity import EpochIdentity, MacHour
from collector.analytics.presence import devices_present, presence_intervals
from collector.analytics.sessions import MAX_VISIT_S, Visit, returning_flags, sessionise
from collector.analytics.settings import SiteSettings
from collector.analytics.spans import (
    Span,
    bucket_ranges,
    buckets_around,
    local_days,
    local_midnights,
    merge_spans,
    seconds,
    utc,
)
from collector.analytics.zones import WHOLE_SITE, moments
from collector.db.partitions import FOOTFALL, TRAJECTORY, VISITS, PartitionedTable, PartitionManager, epoch_days

log = logging.getLogger(__name__)

#: First key of pg_try_advisory_xact_lock(int, int); the second is hashtext(site_id).
SITE_LOCK_CLASS = 0x666F_0006
#: Longest sighting window we expect; widens the presence margin so no bridge is missed.
MAX_WINDOW_S = 60


class MissingPartitions(Exception):
    """The round needs partitions that must be created outside its transaction."""

    def __init__(self, needed: dict[PartitionedTable, set[int]]) -> None:
        super().__init__(", ".join(f"{table.table}: {len(days)} days" for table, days in needed.items()))
        self.needed = needed


@dataclass
class RoundResult:
    dirty_buckets: int = 0
    visits_deleted: int = 0
    visits_written: int = 0
    footfall_buckets: int = 0
    visits_closed: int = 0


class StoredVisit(NamedTuple):
    visit_id: int
    visitor_id: int
    started_s: int
    ended_s: int
    is_visitor: bool
    is_stationary: bool
    is_returning: bool


# --------------------------------------------------------------------------- SQL

_TAKE_DIRTY = "DELETE FROM footfall.analytics_dirty WHERE site_id = $1 RETURNING bucket_start"

_SIGHTINGS = """
SELECT w.device_id, w.key_epoch, extract(epoch FROM w.window_start)::bigint, w.window_s,
       w.pseudonym, w.cluster, w.rssi_max
FROM footfall.wifi_sightings w
JOIN unnest($2::timestamptz[], $3::timestamptz[]) AS r(lo, hi) ON w.window_start >= r.lo AND w.window_start < r.hi
WHERE w.site_id = $1 AND ($4::bigint IS NULL OR w.key_epoch = $4)
"""

_RECORD_MAC_HOURS = """
INSERT INTO footfall.wifi_mac_hours (site_id, key_epoch, pseudonym, cluster, hour_start)
SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[])
ON CONFLICT DO NOTHING
"""

_MAC_HOURS = """
SELECT pseudonym, cluster, extract(epoch FROM hour_start)::bigint
FROM footfall.wifi_mac_hours WHERE site_id = $1 AND key_epoch = $2
"""

_STORED_IDENTITIES = "SELECT pseudonym, visitor_id FROM footfall.wifi_identities WHERE site_id = $1 AND key_epoch = $2"

_STORE_IDENTITIES = """
INSERT INTO footfall.wifi_identities (site_id, key_epoch, pseudonym, visitor_id)
SELECT $1, $2, * FROM unnest($3::bigint[], $4::bigint[])
ON CONFLICT (site_id, key_epoch, pseudonym) DO UPDATE SET visitor_id = EXCLUDED.visitor_id
"""

_VISITS_OF = """
SELECT visit_id, visitor_id, extract(epoch FROM started_at)::bigint, extract(epoch FROM ended_at)::bigint,
       is_visitor, is_stationary, is_returning
FROM footfall.visits WHERE site_id = $1 AND key_epoch = $2 AND visitor_id = ANY($3::bigint[])
"""

_DELETE_VISITS = """
DELETE FROM footfall.visits
WHERE site_id = $1 AND visit_id = ANY($2::bigint[]) AND started_at >= $3 AND started_at <= $4
"""

_DELETE_TRAJECTORY = """
DELETE FROM footfall.trajectory
WHERE site_id = $1 AND visit_id = ANY($2::bigint[]) AND entered_at >= $3 AND entered_at <= $4
"""

_FIRST_ENTRIES = """
SELECT extract(epoch FROM min(entered_at))::bigint
FROM footfall.trajectory
WHERE site_id = $1 AND visit_id = ANY($2::bigint[]) AND entered_at >= $3 AND entered_at <= $4
GROUP BY visit_id, zone_id
"""

_SET_RETURNING = """
UPDATE footfall.visits v SET is_returning = u.is_returning, computed_at = now()
FROM unnest($2::bigint[], $3::timestamptz[], $4::boolean[]) AS u(visit_id, started_at, is_returning)
WHERE v.site_id = $1 AND v.visit_id = u.visit_id AND v.started_at = u.started_at
"""

# Visits and their segments are read apart and joined here: right after a
# round wrote thousands of visits the planner still believes the partitions
# empty and nests a scan of the segments inside the visits, quadratically.
# Every visit has at least one segment (they tile it).
_VISIT_HEADS = """
SELECT visit_id, extract(epoch FROM started_at)::bigint, dwell_s, is_visitor, is_passerby, is_returning
FROM footfall.visits
WHERE site_id = $1 AND started_at >= $2 AND started_at < $4 AND ended_at >= $3
"""

_VISIT_SEGMENTS = """
SELECT visit_id, zone_id, extract(epoch FROM entered_at)::bigint, dwell_s
FROM footfall.trajectory
WHERE site_id = $1 AND visit_id = ANY($2::bigint[]) AND entered_at >= $3 AND entered_at < $4
"""  # all of each visit's segments; the bounds prune partitions

_CROSSINGS = """
SELECT extract(epoch FROM date_bin('300 seconds', crossed_at, 'epoch'))::bigint AS bucket,
       count(*) FILTER (WHERE direction = 'in')::int, count(*) FILTER (WHERE direction = 'out')::int
FROM footfall.door_crossings WHERE site_id = $1 AND crossed_at >= $2 AND crossed_at < $3
GROUP BY bucket
"""

# Counts of one sensor and bucket add up (a late frame adds a row); counts of
# several sensors cannot be de-duplicated, so the site takes the largest.
_PASSERBY_COUNTS = """
SELECT bucket, max(devices)::int FROM (
    SELECT extract(epoch FROM date_bin('300 seconds', bucket_start, 'epoch'))::bigint AS bucket, sum(devices) AS devices
    FROM footfall.passerby_counts WHERE site_id = $1 AND bucket_start >= $2 AND bucket_start < $3
    GROUP BY bucket, device_id
) per_sensor GROUP BY bucket
"""

_DELETE_FOOTFALL = "DELETE FROM footfall.footfall WHERE site_id = $1 AND bucket_start >= $2 AND bucket_start < $3"

# A device's watermark is the creation time of its newest contiguous batch:
# every event it produced before that is committed. Devices further behind
# than the allowed lateness do not hold the site's visits open.
_WATERMARK = """
SELECT min(b.created_at)
FROM footfall.devices d
JOIN footfall.ingest_batches b ON b.site_id = d.site_id AND b.device_id = d.device_id AND b.batch_seq = d.acked_seq
WHERE d.site_id = $1 AND b.created_at > $2
"""

_CLOSE_VISITS = """
UPDATE footfall.visits v SET closed = true
FROM footfall.sites s
WHERE v.site_id = $1 AND s.site_id = v.site_id AND NOT v.closed
  AND v.ended_at + make_interval(secs => s.visit_gap_s) <= $2
"""

VISIT_COLUMNS = (
    "site_id", "visit_id", "key_epoch", "visitor_id", "started_at", "ended_at", "dwell_s", "visitor_band_s",
    "rssi_max", "moments", "is_visitor", "is_passerby", "is_stationary", "is_returning", "closed",
)  # fmt: skip
TRAJECTORY_COLUMNS = ("site_id", "visit_id", "seq", "zone_id", "entered_at", "exited_at", "dwell_s", "rssi_max")
FOOTFALL_COLUMNS = (
    "site_id", "zone_id", "bucket_start", "bucket_seconds", "entries", "exits", "passersby", "visitors",
    "new_visitors", "returning_visitors", "devices_present", "dwell_median_s", "capture_rate",
)  # fmt: skip


# --------------------------------------------------------------------------- the round


class SiteRound:
    """One round for one site on one connection, inside the caller's transaction."""

    def __init__(
        self, connection: asyncpg.Connection, settings: SiteSettings, partitions: PartitionManager, watermark_s: float
    ) -> None:
        self._connection = connection
        self._settings = settings
        self._partitions = partitions
        self._watermark_s = watermark_s
        self._identities: dict[int, EpochIdentity] = {}
        self.result = RoundResult()

    async def run(self) -> RoundResult:
        site_id = self._settings.site_id
        dirty = {seconds(row[0]) for row in await self._connection.fetch(_TAKE_DIRTY, site_id)}
        self.result.dirty_buckets = len(dirty)
        if dirty:
            spans = bucket_ranges(dirty)
            core = await self._sightings(spans)
            await self._record_mac_hours(core)
            margin_s = self._settings.presence.gap_s + MAX_WINDOW_S
            changed = {bucket for lo, hi in spans for bucket in buckets_around(lo, hi - 1, margin_s)}
            by_epoch: dict[int, list[DeviceSighting]] = defaultdict(list)
            for sighting in core:
                by_epoch[sighting.key_epoch].append(sighting)
            for key_epoch, sightings in sorted(by_epoch.items()):
                changed |= await self._resessionise(key_epoch, sightings)
            await self._refresh_footfall(changed)
        status = await self._connection.execute(_CLOSE_VISITS, site_id, utc(self._watermark_s))
        self.result.visits_closed = int(status.split()[-1])
        return self.result

    # ------------------------------------------------------------------ loading

    async def _sightings(self, spans: Sequence[Span], key_epoch: int | None = None) -> list[DeviceSighting]:
        """Sightings whose window starts within the half-open ``spans``."""
        rows = await self._connection.fetch(
            _SIGHTINGS,
            self._settings.site_id,
            [utc(lo) for lo, _ in spans],
            [utc(hi) for _, hi in spans],
            key_epoch,
        )
        return [DeviceSighting(*row) for row in rows]

    async def _record_mac_hours(self, sightings: Iterable[DeviceSighting]) -> None:
        rows = sorted({(s.key_epoch, s.pseudonym, s.cluster, s.start_s // 3_600 * 3_600) for s in sightings})
        if rows:
            epochs, pseudonyms, clusters, hours = zip(*rows)
            await self._connection.execute(
                _RECORD_MAC_HOURS, self._settings.site_id, epochs, pseudonyms, clusters, [utc(h) for h in hours]
            )

    async def _identity(self, key_epoch: int) -> EpochIdentity:
        identity = self._identities.get(key_epoch)
        if identity is None:
            rows = await self._connection.fetch(_MAC_HOURS, self._settings.site_id, key_epoch)
            identity = EpochIdentity.build(
                key_epoch, (MacHour(*row) for row in rows), self._settings.time_zone, self._settings.stationary
            )
            self._identities[key_epoch] = identity
        return identity

    async def _store_identities(self, identity: EpochIdentity) -> dict[int, set[int]]:
        """Store the pseudonym → visitor map of the epoch; return the ids each visitor absorbed."""
        stored = dict(await self._connection.fetch(_STORED_IDENTITIES, self._settings.site_id, identity.key_epoch))
        changed, absorbed = identity.renames(stored)
        if changed:
            await self._connection.execute(
                _STORE_IDENTITIES, self._settings.site_id, identity.key_epoch, list(changed), list(changed.values())
            )
        return absorbed

    # ------------------------------------------------------------------ visits

    async def _resessionise(self, key_epoch: int, core: Sequence[DeviceSighting]) -> set[int]:
        """Replace the visits the epoch's new sightings can change; return the buckets that changed."""
        settings = self._settings
        identity = await self._identity(key_epoch)
        absorbed = await self._store_identities(identity)
        core_by_visitor: dict[int, list[DeviceSighting]] = defaultdict(list)
        for sighting in core:
            core_by_visitor[identity.visitor_of(sighting.pseudonym)].append(sighting)
        affected = set(core_by_visitor) | set(absorbed)
        owner = {visitor_id: visitor_id for visitor_id in affected}
        owner.update((old_id, visitor_id) for visitor_id, old_ids in absorbed.items() for old_id in old_ids)
        rows = await self._connection.fetch(_VISITS_OF, settings.site_id, key_epoch, list(owner))
        stored_by_visitor: dict[int, list[StoredVisit]] = defaultdict(list)
        for row in rows:
            visit = StoredVisit(*row)
            stored_by_visitor[owner[visit.visitor_id]].append(visit)

        stretches: dict[int, list[Span]] = {}
        replaced: list[StoredVisit] = []
        reshaped: set[int] = set()  # visitors renamed or re-flagged stationary: presence changes all along their visits
        for visitor_id in affected:
            spans, touched, stale = self._stretches(
                identity, visitor_id, core_by_visitor.get(visitor_id, ()), stored_by_visitor.get(visitor_id, ())
            )
            stretches[visitor_id] = spans
            replaced += touched
            if stale:
                reshaped.add(visitor_id)

        loaded = await self._sightings(
            [(lo, hi + 1) for lo, hi in merge_spans(s for spans in stretches.values() for s in spans)], key_epoch
        )
        sightings_by_visitor: dict[int, list[DeviceSighting]] = defaultdict(list)
        starts = {visitor_id: [lo for lo, _ in spans] for visitor_id, spans in stretches.items()}
        for sighting in loaded:
            visitor_id = identity.visitor_of(sighting.pseudonym)
            spans = stretches.get(visitor_id)
            if spans:  # is the sighting inside one of the visitor's spans?
                at = bisect.bisect_right(starts[visitor_id], sighting.start_s) - 1
                if at >= 0 and sighting.start_s <= spans[at][1]:
                    sightings_by_visitor[visitor_id].append(sighting)

        def stationary(started_s: int, ended_s: int, visitor_id: int) -> bool:
            return identity.is_stationary(visitor_id, local_days(started_s, ended_s, settings.time_zone))

        new_visits: list[Visit] = []
        flag_updates: list[tuple[StoredVisit, bool]] = []
        replaced_ids = {visit.visit_id for visit in replaced}
        for visitor_id in sorted(affected):
            placed = moments(sightings_by_visitor[visitor_id], settings.zones, settings.session.visitor_rssi_dbm)
            visits = sessionise(
                settings.site_id, key_epoch, visitor_id, placed, settings.session,
                lambda started_s, ended_s, v=visitor_id: stationary(started_s, ended_s, v),
            )  # fmt: skip
            kept = [v for v in stored_by_visitor.get(visitor_id, ()) if v.visit_id not in replaced_ids]
            flags = returning_flags(
                [(v.started_s, v.is_visitor) for v in kept] + [(v.started_s, v.is_visitor) for v in visits],
                settings.time_zone,
            )
            flag_updates += [(v, flag) for v, flag in zip(kept, flags) if flag != v.is_returning]
            new_visits += [dataclasses.replace(v, is_returning=flag) for v, flag in zip(visits, flags[len(kept) :])]

        self._require_partitions(
            {
                VISITS: epoch_days(v.started_s for v in new_visits),
                TRAJECTORY: epoch_days(s.entered_s for v in new_visits for s in v.trajectory),
            }
        )
        changed = await self._arrival_buckets(replaced + [v for v, _ in flag_updates])
        changed |= {bucket_of(t) for v in new_visits for t in (v.started_s, *(s.entered_s for s in v.trajectory))}
        margin_s = settings.presence.gap_s + MAX_WINDOW_S
        for visit in [*replaced, *new_visits]:
            if owner.get(visit.visitor_id, visit.visitor_id) in reshaped:
                changed |= buckets_around(visit.started_s, visit.ended_s, margin_s)
        await self._replace_visits(replaced, new_visits)
        if flag_updates:
            await self._connection.execute(
                _SET_RETURNING,
                settings.site_id,
                [v.visit_id for v, _ in flag_updates],
                [utc(v.started_s) for v, _ in flag_updates],
                [flag for _, flag in flag_updates],
            )
        return changed

    async def _arrival_buckets(self, visits: Sequence[StoredVisit]) -> set[int]:
        """The buckets stored visits count in: their start and their first entry into each zone."""
        if not visits:
            return set()
        rows = await self._connection.fetch(
            _FIRST_ENTRIES,
            self._settings.site_id,
            [v.visit_id for v in visits],
            utc(min(v.started_s for v in visits)),
            utc(max(v.ended_s for v in visits)),
        )
        return {bucket_of(row[0]) for row in rows} | {bucket_of(v.started_s) for v in visits}

    def _stretches(
        self,
        identity: EpochIdentity,
        visitor_id: int,
        core: Sequence[DeviceSighting],
        stored: Sequence[StoredVisit],
    ) -> tuple[list[Span], list[StoredVisit], bool]:
        """The time one visitor's visits must be recomputed over, the stored visits in it, and whether any was stale.

        Seeds are the new sightings, every stored visit under an id this
        visitor absorbed, and stored visits whose stationary flag is stale.
        A stored visit within ``visit_gap_s`` of a seed (or of a visit already
        taken) may merge with it, so it is taken too, until nothing changes.
        Stored visits of one id are at least the gap apart, except where a
        visit was cut at ``MAX_VISIT_S``, so this settles quickly. Every
        sighting of the visitor inside the resulting spans belongs to a taken
        visit or is new, and none outside can join them: recomputing the spans
        alone gives what recomputing everything would. For the same reason
        spans less than the gap apart may be joined, which keeps them few.
        """
        time_zone = self._settings.time_zone
        gap_s = self._settings.session.visit_gap_s
        spans = [(s.start_s, s.start_s + s.window_s) for s in core]
        stale: list[StoredVisit] = []
        rest: list[StoredVisit] = []
        taken: list[StoredVisit] = []
        for visit in stored:
            renamed_or_reflagged = visit.visitor_id != visitor_id or visit.is_stationary != identity.is_stationary(
                visitor_id, local_days(visit.started_s, visit.ended_s, time_zone)
            )
            (stale if renamed_or_reflagged else rest).append(visit)
        spans = merge_spans(spans + [(v.started_s, v.ended_s) for v in stale], gap_s)
        while True:
            near = [
                v for v in rest if any(v.started_s < hi + gap_s and v.ended_s > lo - gap_s for lo, hi in spans)
            ]
            if not near:
                return spans, taken + stale, bool(stale)
            taken += near
            rest = [v for v in rest if v not in near]
            spans = merge_spans(spans + [(v.started_s, v.ended_s) for v in near], gap_s)

    async def _replace_visits(self, replaced: Sequence[StoredVisit], visits: Sequence[Visit]) -> None:
        connection, site_id = self._connection, self._settings.site_id
        if replaced:
            ids = [v.visit_id for v in replaced]
            first_s, last_s = min(v.started_s for v in replaced), max(v.ended_s for v in replaced)
            await connection.execute(_DELETE_TRAJECTORY, site_id, ids, utc(first_s), utc(last_s))
            await connection.execute(_DELETE_VISITS, site_id, ids, utc(first_s), utc(last_s))
        if visits:
            gap_s = self._settings.session.visit_gap_s
            await connection.copy_records_to_table(
                "visits",
                schema_name="footfall",
                columns=VISIT_COLUMNS,
                records=[
                    (
                        site_id, v.visit_id, v.key_epoch, v.visitor_id, utc(v.started_s), utc(v.ended_s), v.dwell_s,
                        v.visitor_band_s, v.rssi_max, v.moments, v.is_visitor, v.is_passerby, v.is_stationary,
                        v.is_returning, v.ended_s + gap_s <= self._watermark_s,
                    )  # fmt: skip
                    for v in visits
                ],
            )
            await connection.copy_records_to_table(
                "trajectory",
                schema_name="footfall",
                columns=TRAJECTORY_COLUMNS,
                records=[
                    (site_id, v.visit_id, s.seq, s.zone_id, utc(s.entered_s), utc(s.exited_s), s.dwell_s, s.rssi_max)
                    for v in visits
                    for s in v.trajectory
                ],
            )
        self.result.visits_deleted += len(replaced)
        self.result.visits_written += len(visits)

    # ------------------------------------------------------------------ footfall

    async def _refresh_footfall(self, buckets: set[int]) -> None:
        ranges = bucket_ranges(buckets)
        self._require_partitions({FOOTFALL: epoch_days(b for lo, hi in ranges for b in range(lo, hi, BUCKET_S))})
        for lo_s, hi_s in ranges:
            rows = await self._footfall_rows(lo_s, hi_s)
            await self._connection.execute(_DELETE_FOOTFALL, self._settings.site_id, utc(lo_s), utc(hi_s))
            await self._connection.copy_records_to_table(
                "footfall",
                schema_name="footfall",
                columns=FOOTFALL_COLUMNS,
                records=[self._footfall_record(row) for row in rows],
            )
        self.result.footfall_buckets += len(buckets)

    async def _footfall_rows(self, lo_s: int, hi_s: int) -> list[FootfallRow]:
        connection, site_id = self._connection, self._settings.site_id
        crossings = {row[0]: (row[1], row[2]) for row in await connection.fetch(_CROSSINGS, site_id, utc(lo_s), utc(hi_s))}
        counts = dict(await connection.fetch(_PASSERBY_COUNTS, site_id, utc(lo_s), utc(hi_s)))
        return footfall_rows(
            range(lo_s, hi_s, BUCKET_S),
            await self._visit_summaries(lo_s, hi_s),
            crossings,
            counts,
            await self._presence(lo_s, hi_s),
        )

    async def _visit_summaries(self, lo_s: int, hi_s: int) -> list[VisitSummary]:
        connection, site_id = self._connection, self._settings.site_id
        heads = {
            row[0]: tuple(row[1:])
            for row in await connection.fetch(
                _VISIT_HEADS, site_id, utc(lo_s - MAX_VISIT_S), utc(lo_s), utc(hi_s)
            )
        }
        zones: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
        segments = await connection.fetch(
            _VISIT_SEGMENTS, site_id, list(heads), utc(lo_s - MAX_VISIT_S), utc(hi_s + MAX_VISIT_S)
        )
        for visit_id, zone_id, entered_s, zone_dwell_s in segments:
            first_s, total_s = zones[visit_id].get(zone_id, (entered_s, 0))
            zones[visit_id][zone_id] = (min(first_s, entered_s), total_s + zone_dwell_s)
        return [VisitSummary(*head, zones=zones[visit_id]) for visit_id, head in heads.items()]

    async def _presence(self, lo_s: int, hi_s: int) -> dict[str, dict[int, float]]:
        """Devices present per bucket of [lo_s, hi_s): site-wide in the visitor band, and per zone.

        The site-wide figure is the estimator of :mod:`collector.analytics.presence`
        exactly; per zone, a device is in the zone of each of its moments.
        Stationary devices of each local day are left out.
        """
        settings = self._settings
        margin_s = settings.presence.gap_s + MAX_WINDOW_S
        sightings = await self._sightings([(lo_s - margin_s, hi_s + margin_s)])
        identities = {e: await self._identity(e) for e in sorted({s.key_epoch for s in sightings})}

        def visitor_of(key_epoch: int, pseudonym: int) -> int:
            return identities[key_epoch].visitor_of(pseudonym)

        by_visitor: dict[tuple[int, int], list[DeviceSighting]] = defaultdict(list)
        for sighting in sightings:
            by_visitor[(sighting.key_epoch, visitor_of(sighting.key_epoch, sighting.pseudonym))].append(sighting)
        in_zone: dict[str, list[DeviceSighting]] = defaultdict(list)
        for (key_epoch, visitor_id), own in by_visitor.items():
            for m in moments(own, settings.zones, settings.session.visitor_rssi_dbm):
                in_zone[m.zone_id].append(
                    DeviceSighting(m.zone_id, key_epoch, m.start_s, m.end_s - m.start_s, visitor_id, visitor_id, None)
                )

        site_intervals = presence_intervals(sightings, visitor_of, settings.presence)
        zone_config = dataclasses.replace(settings.presence, band_dbm=-120)
        intervals = {WHOLE_SITE: site_intervals} | {
            zone_id: presence_intervals(rows, lambda _epoch, visitor_id: visitor_id, zone_config)
            for zone_id, rows in in_zone.items()
        }
        present: dict[str, dict[int, float]] = defaultdict(dict)
        for start_s, end_s, day in local_midnights(lo_s, hi_s, settings.time_zone):
            fixed = frozenset().union(*(identity.stationary_on(day) for identity in identities.values()))
            for zone_id, zone_intervals in intervals.items():
                config = settings.presence if zone_id == WHOLE_SITE else zone_config
                present[zone_id].update(devices_present(zone_intervals, start_s, end_s, config, exclude=fixed))
        return present

    def _footfall_record(self, row: FootfallRow) -> tuple:
        return (
            self._settings.site_id, row.zone_id, utc(row.bucket_start_s), BUCKET_S, row.entries, row.exits,
            row.passersby, row.visitors, row.new_visitors, row.returning_visitors, row.devices_present,
            row.dwell_median_s, row.capture_rate,
        )  # fmt: skip

    # ------------------------------------------------------------------ partitions

    def _require_partitions(self, wanted: dict[PartitionedTable, set[int]]) -> None:
        needed = {table: missing for table, days in wanted.items() if (missing := self._partitions.missing(table, days))}
        if needed:
            raise MissingPartitions(needed)


async def site_watermark_s(connection: asyncpg.Connection, site_id: str, now_s: float, max_lateness_s: float) -> float:
    """Up to when all of the site's (not hopelessly late) devices have delivered, as Unix seconds."""
    floor_s = now_s - max_lateness_s
    oldest = await connection.fetchval(_WATERMARK, site_id, utc(floor_s))
    return floor_s if oldest is None else oldest.timestamp()


async def run_site_round(
    pool: asyncpg.Pool, site_id: str, partitions: PartitionManager, now_s: float, max_lateness_s: float
) -> RoundResult | None:
    """One round for ``site_id``; ``None`` when another collector is working on the site right now."""
    while True:
        try:
            async with pool.acquire() as connection, connection.transaction():
                locked = await connection.fetchval(
                    "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", SITE_LOCK_CLASS, site_id
                )
                if not locked:
                    return None
                settings = await SiteSettings.load(connection, site_id)
                watermark_s = await site_watermark_s(connection, site_id, now_s, max_lateness_s)
                return await SiteRound(connection, settings, partitions, watermark_s).run()
        except MissingPartitions as missing:
            log.info("analytics=partitions site=%s need=%s", site_id, missing)
            for table, days in missing.needed.items():
                await partitions.ensure(pool, table, days)
        except asyncpg.CheckViolationError as error:
            if "no partition" not in str(error):
                raise
            partitions.forget()  # retention (maybe another collector's) dropped one we thought existed
