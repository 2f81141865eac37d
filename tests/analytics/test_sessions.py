"""Zones, sessionisation, trajectory and footfall rows by hand: the rules, each on a small example."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from collector.analytics.devices import DeviceSighting
from collector.analytics.footfall import FootfallRow, VisitSummary, footfall_rows
from collector.analytics.sessions import MAX_VISIT_S, SessionConfig, returning_flags, sessionise, split_visits
from collector.analytics.trajectory import Segment, segments
from collector.analytics.zones import Moment, Zone, ZoneMap, moments

T0 = 1_709_625_600  # 2024-03-05 08:00 UTC, a multiple of 300
PRAGUE = ZoneInfo("Europe/Prague")
ZONES = ZoneMap(
    [
        Zone("street", "front", -90, -66),
        Zone("entrance", "front", -65, 0),
        Zone("aisles", "back", -65, 0),
    ]
)


def seen(sensor: str, start_s: int, rssi: int | None, pseudonym: int = 1) -> DeviceSighting:
    return DeviceSighting(sensor, 7, start_s, 10, pseudonym, pseudonym, rssi)


def at(start_s: int, zone_id: str = "entrance", rssi: int | None = -50) -> Moment:
    return Moment(start_s, start_s + 10, zone_id, rssi, rssi is None or rssi >= -65)


def test_the_loudest_sensor_decides_the_zone_of_a_moment():
    rows = [
        seen("front", T0, -70), seen("back", T0, -55),  # back louder: aisles
        seen("front", T0 + 60, -50), seen("back", T0 + 60, -60),  # front louder, in its inside band
        seen("front", T0 + 120, -80),  # front only, its street band
        seen("front", T0 + 180, -95),  # below every band of front: in no zone
        seen("back", T0 + 240, -70),  # back has no band for -70
        seen("front", T0 + 300, -60), seen("back", T0 + 300, -60),  # a tie goes to the smaller sensor id
    ]  # fmt: skip
    placed = moments(rows, ZONES, visitor_rssi_dbm=-65)
    assert [(m.start_s - T0, m.zone_id, m.rssi_max, m.in_visitor_band) for m in placed] == [
        (0, "aisles", -55, True),
        (60, "entrance", -50, True),
        (120, "street", -80, False),
        (300, "aisles", -60, True),
    ]


def test_a_sensor_without_zones_is_one_zone_from_the_passerby_band_up():
    zones = ZoneMap([], passerby_rssi_dbm=-90)
    assert zones.zone_of("pos1", -89) == "pos1"
    assert zones.zone_of("pos1", -91) is None
    assert zones.zone_of("pos1", None) == "pos1"
    overlapping = ZoneMap([Zone("near", "s", -60, 0), Zone("room", "s", -90, 0)])
    assert overlapping.zone_of("s", -50) == "near"  # the innermost band wins
    assert overlapping.zone_of("s", -70) == "room"


def test_a_silence_of_the_gap_or_longer_starts_a_new_visit():
    first = [at(T0 + 60 * i) for i in range(3)]  # ends T0 + 130
    second = [at(T0 + 130 + 900), at(T0 + 130 + 900 + 60)]  # exactly the gap after the first ended
    assert split_visits(first + second, visit_gap_s=900) == [first, second]
    close = [at(T0 + 130 + 899)]
    assert split_visits(first + close, visit_gap_s=900) == [first + close]


def test_a_visit_lasts_at_most_a_day():
    ticks = [at(T0 + 600 * i) for i in range(2 * MAX_VISIT_S // 600)]
    runs = split_visits(ticks, visit_gap_s=900)
    assert [len(run) for run in runs] == [144, 144]
    assert all(run[-1].end_s - run[0].start_s <= MAX_VISIT_S for run in runs)


def test_a_visitor_stays_five_minutes_in_the_band_a_passerby_does_not():
    config = SessionConfig(visit_gap_s=900, visitor_rssi_dbm=-65, visitor_min_dwell_s=300)
    street, inside = [at(T0, "street", -80)], [at(T0 + 60 * i, "entrance", -50) for i in range(1, 6)]
    (visit,) = sessionise("shop", 7, 42, street + inside + [at(T0 + 360, "street", -80)], config)
    assert (visit.started_s, visit.ended_s, visit.dwell_s) == (T0, T0 + 370, 370)
    assert visit.visitor_band_s == 250 and visit.is_passerby  # 60 s .. 310 s in the band: short of 300
    (visitor,) = sessionise("shop", 7, 42, street + inside + [at(T0 + 360, "entrance", -50)], config)
    assert visitor.visitor_band_s == 310 and visitor.is_visitor and not visitor.is_passerby
    (staff,) = sessionise("shop", 7, 42, street + inside, config, lambda started_s, ended_s: True)
    assert staff.is_stationary and not staff.is_visitor and not staff.is_passerby
    assert visitor.visit_id == sessionise("shop", 7, 42, street + inside, config)[0].visit_id  # same start, same id


def test_segments_tile_the_visit_so_their_dwell_adds_up():
    run = [at(T0, "street"), at(T0 + 60, "entrance", -40), at(T0 + 120, "entrance", -55), at(T0 + 180, "aisles"), at(T0 + 240, "entrance")]
    assert segments(run) == [
        Segment(1, "street", T0, T0 + 60, -50),
        Segment(2, "entrance", T0 + 60, T0 + 180, -40),
        Segment(3, "aisles", T0 + 180, T0 + 240, -50),
        Segment(4, "entrance", T0 + 240, T0 + 250, -50),
    ]
    assert sum(s.dwell_s for s in segments(run)) == run[-1].end_s - run[0].start_s


def test_returning_means_a_visitor_visit_on_an_earlier_local_day():
    evening = 1_709_679_000  # 2024-03-05 22:50 UTC = 23:50 in Prague
    after_midnight = evening + 1_200  # 00:10 the next local day, same UTC day
    assert returning_flags([(evening, True), (after_midnight, True)], PRAGUE) == [False, True]
    assert returning_flags([(evening, False), (after_midnight, True)], PRAGUE) == [False, False]  # passers-by do not count
    assert returning_flags([(after_midnight, True), (evening, True)], PRAGUE) == [True, False]  # order does not matter
    assert returning_flags([(evening - 600, True), (evening, True)], PRAGUE) == [False, False]  # same day twice


def test_footfall_rows_count_arrivals_per_bucket_and_leave_out_empty_rows():
    visitor = VisitSummary(T0 + 10, 900, True, False, False, {"entrance": (T0 + 10, 200), "aisles": (T0 + 310, 700)})
    returning = VisitSummary(T0 + 20, 600, True, False, True, {"entrance": (T0 + 20, 600)})
    passerby = VisitSummary(T0 + 30, 40, False, True, False, {"street": (T0 + 30, 40)})
    earlier = VisitSummary(T0 - 300, 1200, True, False, False, {"aisles": (T0 + 320, 100)})  # arrived before, enters aisles now
    rows = footfall_rows(
        [T0, T0 + 300, T0 + 600],
        [visitor, returning, passerby, earlier],
        crossings={T0: (2, 0), T0 + 600: (0, 1)},
        passerby_counts={T0 + 300: 4},
        presence={"*": {T0: 1.5, T0 + 300: 2.0}, "aisles": {T0 + 300: 1.0}},
    )
    assert rows == [
        FootfallRow("*", T0, 2, 0, 1, 2, 1, 1, 1.5, 750.0, 2 / 3),
        FootfallRow("*", T0 + 300, 0, 0, 4, 0, 0, 0, 2.0, None, 0.0),
        FootfallRow("*", T0 + 600, 0, 1, 0, 0, 0, 0, 0.0, None, None),
        FootfallRow("aisles", T0 + 300, None, None, 0, 2, 2, 0, 1.0, 400.0, 1.0),
        FootfallRow("entrance", T0, None, None, 0, 2, 1, 1, 0.0, 400.0, 1.0),
        FootfallRow("street", T0, None, None, 1, 0, 0, 0, 0.0, None, 0.0),
    ]
