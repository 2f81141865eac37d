"""Sessionisation: one device's moments at a site become visits.

A visit is a run of moments of one visitor (a site-wide device,
:mod:`collector.analytics.devices`) with silences shorter than ``visit_gap_s``
(15 minutes, Cloud4Wi's session timeout). It is a *visitor's* visit when the
device stayed in the visitor band (−65 dBm, Aruba) for at least
``visitor_min_dwell_s`` (5 minutes), measured from its first to its last
moment in the band; otherwise it is a *passer-by's*. A device found
stationary (staff phone, desktop PC) is neither. Returning is decided later,
from the visitor's other visits (:func:`returning_flags`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from collector.analytics.trajectory import Segment, segments
from collector.analytics.zones import Moment

#: A visit lasts at most a day: a device present for longer (a desktop PC) has
#: one visit per day, and a query for the visits around a time needs to look
#: back no further than this.
MAX_VISIT_S = 86_400


@dataclass(frozen=True)
class SessionConfig:
    """Per-site thresholds (columns of ``footfall.sites``), defaults beside them."""

    visit_gap_s: int = field(default=900, metadata={"help": "a silence this long ends a visit, seconds"})
    visitor_rssi_dbm: int = field(default=-65, metadata={"help": "weakest RSSI of the visitor band, dBm"})
    visitor_min_dwell_s: int = field(default=300, metadata={"help": "time in the band that makes a visitor, seconds"})


@dataclass(frozen=True)
class Visit:
    """One visit of one device, with its trajectory."""

    site_id: str
    key_epoch: int
    visitor_id: int
    started_s: int
    ended_s: int
    visitor_band_s: int
    rssi_max: int | None
    moments: int
    is_stationary: bool
    is_visitor: bool
    trajectory: tuple[Segment, ...]
    #: Known only with the visitor's other visits: :func:`returning_flags`.
    is_returning: bool = False

    @property
    def visit_id(self) -> int:
        return visit_id(self.site_id, self.key_epoch, self.visitor_id, self.started_s)

    @property
    def dwell_s(self) -> int:
        return self.ended_s - self.started_s

    @property
    def is_passerby(self) -> bool:
        return not self.is_visitor and not self.is_stationary


def visit_id(site_id: str, key_epoch: int, visitor_id: int, started_s: int) -> int:
    """A stable id: the same visit recomputed from the same data keeps it, whatever order rows came in."""
    digest = hashlib.sha256(f"{site_id}/{key_epoch}/{visitor_id}/{started_s}".encode()).digest()
    return struct.unpack(">q", digest[:8])[0]


def split_visits(device_moments: Sequence[Moment], visit_gap_s: int) -> list[list[Moment]]:
    """Time-ordered moments cut wherever the silence reaches ``visit_gap_s``, and after ``MAX_VISIT_S``."""
    runs: list[list[Moment]] = []
    for moment in device_moments:
        if (
            runs
            and moment.start_s - runs[-1][-1].end_s < visit_gap_s
            and moment.end_s - runs[-1][0].start_s <= MAX_VISIT_S
        ):
            runs[-1].append(moment)
        else:
            runs.append([moment])
    return runs


def sessionise(
    site_id: str,
    key_epoch: int,
    visitor_id: int,
    device_moments: Sequence[Moment],
    config: SessionConfig,
    is_stationary: Callable[[int, int], bool] = lambda started_s, ended_s: False,
) -> list[Visit]:
    """The visits of one device from its time-ordered moments.

    ``is_stationary(started_s, ended_s)`` says whether the device counts as
    stationary during a visit (:mod:`collector.analytics.identity`).
    """
    visits = []
    for run in split_visits(device_moments, config.visit_gap_s):
        in_band = [m for m in run if m.in_visitor_band]
        visitor_band_s = in_band[-1].end_s - in_band[0].start_s if in_band else 0
        stationary = is_stationary(run[0].start_s, run[-1].end_s)
        visits.append(
            Visit(
                site_id=site_id,
                key_epoch=key_epoch,
                visitor_id=visitor_id,
                started_s=run[0].start_s,
                ended_s=run[-1].end_s,
                visitor_band_s=visitor_band_s,
                rssi_max=max((m.rssi_max for m in run if m.rssi_max is not None), default=None),
                moments=len(run),
                is_stationary=stationary,
                is_visitor=not stationary and bool(in_band) and visitor_band_s >= config.visitor_min_dwell_s,
                trajectory=tuple(segments(run)),
            )
        )
    return visits


def local_day(epoch_s: float, time_zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(epoch_s, timezone.utc).astimezone(time_zone).date()


def returning_flags(visits: Iterable[tuple[int, bool]], time_zone: ZoneInfo) -> list[bool]:
    """For one visitor's visits as (started_s, is_visitor): was there a visitor visit on an earlier local day?

    New vs returning counts visitors, so only visitor visits make a later
    visit a return; the visits must all be of one key epoch (one identity).
    """
    visits = list(visits)
    visitor_days = [local_day(started_s, time_zone) for started_s, is_visitor in visits if is_visitor]
    first_day = min(visitor_days, default=None)
    return [first_day is not None and local_day(started_s, time_zone) > first_day for started_s, _ in visits]
