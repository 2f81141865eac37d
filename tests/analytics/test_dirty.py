"""Which buckets a batch queues for analytics."""

from __future__ import annotations

from collector.analytics.dirty import dirty_buckets
from shared.protocol import Batch, CrossingRow, Crossings, PasserbyCounts, PasserbyRow, SightingRow, Sightings

T0 = 1_709_625_600  # a multiple of 300


def test_every_event_queues_its_bucket_and_a_long_passerby_bucket_all_of_its_own():
    sightings = Sightings([SightingRow(T0 + t, 1, 1, 1, -50, -50.0, 6, True, 1, None, None) for t in (0, 10, 290, 300)])
    crossings = Crossings([CrossingRow(T0 + 899.5, "door", "in", 1)])
    counts = PasserbyCounts([PasserbyRow(T0 + 1_200, 3, 9)], bucket_s=600)
    shop = Batch("shop", "d1", 1, T0 + 2_000, 0, 1, sightings=sightings, crossings=crossings)
    other = Batch("mall", "d9", 1, T0 + 2_000, 0, 1, passersby=counts)
    assert dirty_buckets([shop, other]) == {
        ("shop", T0), ("shop", T0 + 300), ("shop", T0 + 600), ("mall", T0 + 1_200), ("mall", T0 + 1_500),
    }  # fmt: skip
    assert dirty_buckets([Batch("shop", "d1", 2, T0, 0, 2)]) == set()
