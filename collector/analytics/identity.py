"""Who is who within one key epoch of a site: visitor ids and stationary devices.

A *visitor id* is the site-wide device of :class:`~collector.analytics.devices.DeviceIndex`
(the smallest MAC pseudonym among everything any sensor linked to it), built
from the (pseudonym, cluster) pairs in ``wifi_mac_hours``. Late data can only
merge devices, never split them, so an id can only give way to a smaller one;
:meth:`EpochIdentity.renames` says which, so their visits are recomputed.

A device is *stationary* on a local day when it was heard in at least
``stationary_min_hours`` distinct hours of that day (the estimator of
:mod:`collector.analytics.stationary`, applied day by day so a long key period
does not turn a regular customer into furniture), or on one of the
``STATIONARY_CARRY_DAYS`` days before: staff phones stay staff phones, and a
morning should not count them as visitors until they have been around for
six hours again. With the default daily key a device is new every day, so
this only helps with longer key periods.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from collector.analytics.devices import DeviceIndex, DeviceSighting
from collector.analytics.sessions import local_day
from collector.analytics.stationary import StationaryConfig, stationary_devices

STATIONARY_CARRY_DAYS = 7


class MacHour(NamedTuple):
    """A row of ``wifi_mac_hours``: this MAC, linked to this cluster, was heard in this hour."""

    pseudonym: int
    cluster: int
    hour_s: int


@dataclass(frozen=True)
class EpochIdentity:
    key_epoch: int
    index: DeviceIndex
    pseudonyms: frozenset[int]
    #: Local day → visitor ids heard in enough hours of that day (see :meth:`stationary_on`).
    stationary: Mapping[date, frozenset[int]]

    @classmethod
    def build(
        cls, key_epoch: int, rows: Iterable[MacHour], time_zone: ZoneInfo, config: StationaryConfig
    ) -> EpochIdentity:
        rows = list(rows)
        index = DeviceIndex()
        by_day: dict[date, list[DeviceSighting]] = defaultdict(list)
        for row in rows:
            index.link(key_epoch, row.pseudonym, row.cluster)
            by_day[local_day(row.hour_s, time_zone)].append(
                DeviceSighting("", key_epoch, row.hour_s, 0, row.pseudonym, row.cluster, None)
            )
        stationary = {
            day: frozenset(stationary_devices(heard, index.device_of, config)) for day, heard in by_day.items()
        }
        return cls(key_epoch, index, frozenset(row.pseudonym for row in rows), stationary)

    def visitor_of(self, pseudonym: int) -> int:
        return self.index.device_of(self.key_epoch, pseudonym)

    def stationary_on(self, day: date) -> frozenset[int]:
        """Visitor ids stationary on ``day`` or on one of the ``STATIONARY_CARRY_DAYS`` days before it."""
        carried = (day - timedelta(days=back) for back in range(STATIONARY_CARRY_DAYS + 1))
        return frozenset().union(*(self.stationary.get(earlier, ()) for earlier in carried))

    def is_stationary(self, visitor_id: int, days: Iterable[date]) -> bool:
        return any(visitor_id in self.stationary_on(day) for day in days)

    def renames(self, stored: Mapping[int, int]) -> tuple[dict[int, int], dict[int, set[int]]]:
        """Compare with the stored pseudonym → visitor id map.

        Returns the rows to store (new or changed pseudonyms) and, per current
        visitor id, the ids it absorbed since the map was stored.
        """
        changed: dict[int, int] = {}
        absorbed: dict[int, set[int]] = defaultdict(set)
        for pseudonym in self.pseudonyms:
            visitor_id = self.visitor_of(pseudonym)
            before = stored.get(pseudonym)
            if before != visitor_id:
                changed[pseudonym] = visitor_id
                if before is not None:
                    absorbed[visitor_id].add(before)
        return changed, dict(absorbed)
