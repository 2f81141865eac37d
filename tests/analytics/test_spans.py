"""Span arithmetic of analytics rounds, by hand."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from collector.analytics.spans import bucket_ranges, buckets_around, local_days, local_midnights, merge_spans

BERLIN = ZoneInfo("Europe/Berlin")


def test_spans_join_when_they_overlap_touch_or_lie_closer_than_the_slack():
    assert merge_spans([(50, 60), (0, 10), (10, 20)]) == [(0, 20), (50, 60)]
    assert merge_spans([(0, 10), (40, 50)], slack_s=30) == [(0, 10), (40, 50)]  # exactly the slack apart: kept apart
    assert merge_spans([(0, 10), (39, 50)], slack_s=30) == [(0, 50)]


def test_buckets_become_ranges_and_margins_reach_neighbouring_buckets():
    assert bucket_ranges([600, 0, 300, 1_200]) == [(0, 900), (1_200, 1_500)]
    assert buckets_around(600, 899, 0) == {600}
    assert buckets_around(600, 899, 1) == {300, 600, 900}


def test_local_days_and_midnights_follow_daylight_saving():
    midnight = int(datetime(2024, 3, 31, tzinfo=BERLIN).timestamp())
    next_midnight = int(datetime(2024, 4, 1, tzinfo=BERLIN).timestamp())
    pieces = local_midnights(midnight - 3_600, next_midnight + 3_600, BERLIN)
    assert [(end - start) // 3_600 for start, end, _ in pieces] == [1, 23, 1]
    assert [day for _, _, day in pieces] == [date(2024, 3, 30), date(2024, 3, 31), date(2024, 4, 1)]
    assert local_days(midnight - 60, next_midnight, BERLIN) == [date(2024, 3, 30), date(2024, 3, 31), date(2024, 4, 1)]
