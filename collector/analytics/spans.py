"""Time arithmetic of analytics rounds: spans of seconds, 5-minute buckets, the site's local days."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from collector.analytics.footfall import BUCKET_S, bucket_of
from collector.analytics.sessions import local_day

#: A closed span of Unix seconds.
Span = tuple[int, int]


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def merge_spans(spans: Iterable[Span], slack_s: int = 0) -> list[Span]:
    """Closed spans joined where they overlap, touch, or lie less than ``slack_s`` apart; in order."""
    merged: list[Span] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + max(slack_s - 1, 0):
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def bucket_ranges(buckets: Iterable[int]) -> list[Span]:
    """Consecutive bucket starts as half-open ranges [first, last + BUCKET_S)."""
    return merge_spans((bucket, bucket + BUCKET_S) for bucket in buckets)


def buckets_around(lo_s: int, hi_s: int, margin_s: int) -> set[int]:
    """The buckets touching [lo_s − margin_s, hi_s + margin_s]."""
    return set(range(bucket_of(lo_s - margin_s), bucket_of(hi_s + margin_s) + 1, BUCKET_S))


def local_days(started_s: int, ended_s: int, time_zone: ZoneInfo) -> list[date]:
    """Every local day from the one of ``started_s`` to the one of ``ended_s``."""
    first, last = local_day(started_s, time_zone), local_day(ended_s, time_zone)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def local_midnights(lo_s: int, hi_s: int, time_zone: ZoneInfo) -> list[tuple[int, int, date]]:
    """[lo_s, hi_s) cut at the site's local midnights: (start, end, local day) pieces."""
    pieces = []
    start_s = lo_s
    while start_s < hi_s:
        day = local_day(start_s, time_zone)
        next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), time_zone)
        end_s = min(hi_s, int(next_midnight.timestamp()))
        pieces.append((start_s, end_s, day))
        start_s = end_s
    return pieces
