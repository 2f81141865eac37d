"""Who comes by a simulated store, with which phone, along which path.

Every phone probes on a fixed tick (``probe_interval_s``, a multiple of the
sighting window), and a person spends a whole number of ticks in each zone of
their path. That keeps the truth exact: a visit starts at its first tick and
ends one window after its last, and a zone is entered at its first tick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from shared.simulator.layout import StoreLayout

Kind = Literal["visitor", "browser", "passerby", "staff", "fixed", "no_phone"]
#: Ticks of people without a phone: only their door crossings exist.
NO_PHONE_TICK_S = 60


@dataclass(frozen=True)
class Phone:
    phone_id: int
    #: Capability class: phones of one model share a fingerprint.
    model: int
    #: Locally administered (randomised) MACs; a universal MAC never rotates.
    randomized: bool
    #: A new random MAC this often, seconds; ``None`` keeps one MAC.
    rotate_every_s: int | None
    probe_interval_s: int
    #: The 802.11 sequence counter continues across a MAC change (many Android drivers).
    keeps_sequence: bool


@dataclass(frozen=True)
class Stop:
    zone_id: str
    ticks: int


@dataclass(frozen=True)
class Person:
    """One person's one visit (a returning customer is several Persons sharing a Phone)."""

    person_id: int
    kind: Kind
    phone: Phone | None
    arrive_s: int
    path: tuple[Stop, ...]

    @property
    def tick_s(self) -> int:
        return self.phone.probe_interval_s if self.phone else NO_PHONE_TICK_S

    def ticks(self) -> list[tuple[int, str]]:
        """(time, zone) of every probe tick."""
        out, t = [], self.arrive_s
        for stop in self.path:
            for _ in range(stop.ticks):
                out.append((t, stop.zone_id))
                t += self.tick_s
        return out


@dataclass(frozen=True)
class ScenarioConfig:
    """How many of whom, over which local days; defaults make a quiet weekday."""

    first_day: date
    days: int = 1
    opening_hour: int = 9
    closing_hour: int = 19
    visitors_per_day: int = 30
    browsers_per_day: int = 8
    passersby_per_day: int = 60
    walk_ins_without_phone_per_day: int = 5
    staff: int = 2
    fixed_devices: int = 1
    #: Customers with a fixed-MAC phone who come on some of the days.
    regulars: int = 6
    regular_visit_chance: float = 0.6
    randomized_share: float = 0.7
    rotate_every_s: int = 600
    probe_interval_s: int = 60
    #: Capability fingerprint classes and how unevenly phones spread over them (Zipf exponent).
    #: Calibrated on real days: the Brno captures show 33–57 classes among ~200 randomised
    #: clusters, the most common holding 12–18 % of them; 40 classes at 0.9 give ~17 %.
    models: int = 40
    model_skew: float = 0.9
    #: The pseudonym key period of the site's key group.
    key_period_s: int = 86_400
    seed: int = 1


def generate_people(layout: StoreLayout, config: ScenarioConfig) -> list[Person]:
    """Deterministic in ``config.seed``."""
    rng = random.Random(config.seed)
    zone = _ZoneNames(layout)
    time_zone = ZoneInfo(layout.time_zone)
    people: list[Person] = []
    phones = _PhoneMaker(rng, config)

    def add(kind: Kind, phone: Phone | None, arrive_s: int, path: list[Stop]) -> None:
        people.append(Person(len(people) + 1, kind, phone, arrive_s - arrive_s % layout.window_s, tuple(path)))

    # Staff phones keep one MAC (as on the shop's Wi-Fi): a rotating one could not be followed across
    # the lunch break, and each half day alone is too short to look stationary (docs/data-model.md).
    staff_phones = [phones.make(rotate=False) for _ in range(config.staff)]
    fixed_phones = [phones.make(randomized=False, rotate=False, interval_s=120) for _ in range(config.fixed_devices)]
    regular_phones = [phones.make(rotate=False) for _ in range(config.regulars)]
    for day_number in range(config.days):
        day = config.first_day + timedelta(days=day_number)
        opens_s = _local_s(day, config.opening_hour, time_zone)
        closes_s = _local_s(day, config.closing_hour, time_zone)

        def arrival(minutes_before_closing: int = 60) -> int:
            return rng.randrange(opens_s, closes_s - minutes_before_closing * 60)

        for phone in fixed_phones:  # a desktop PC at the back, on from two hours before opening to two after closing
            on_s = opens_s - 7_200
            add("fixed", phone, on_s + 30, [Stop(zone.back, (closes_s + 7_200 - on_s) // phone.probe_interval_s)])
        for phone in staff_phones:  # 4 + 4.5 hours between the counter and the shelves, lunch out of range
            stints = 4 * 3_600 // phone.probe_interval_s // 40
            shift_s = opens_s - 1_800 + rng.randrange(0, 600)
            morning = [Stop(zone.inside[i % 2], 40) for i in range(stints)]
            add("staff", phone, shift_s, morning)
            add("staff", phone, shift_s + 5 * 3_600, [*morning, Stop(zone.entrance, 30)])
        customers = [phones.make() for _ in range(config.visitors_per_day)]
        customers += [p for p in regular_phones if rng.random() < config.regular_visit_chance]
        for phone in customers:
            inside = [Stop(zone.entrance, rng.randint(2, 6)), Stop(zone.back, rng.randint(4, 25))]
            if rng.random() < 0.5:
                inside.append(Stop(zone.entrance, rng.randint(1, 4)))
            path = [Stop(zone.street, rng.randint(1, 2)), *inside, Stop(zone.street, 1)]
            add("visitor", phone, arrival(), path)
        for _ in range(config.browsers_per_day):  # in and out again within a few minutes
            path = [Stop(zone.street, 1), Stop(zone.entrance, rng.randint(1, 4)), Stop(zone.street, 1)]
            add("browser", phones.make(), arrival(), path)
        for _ in range(config.passersby_per_day):
            add("passerby", phones.make(), arrival(10), [Stop(zone.street, rng.randint(1, 3))])
        for _ in range(config.walk_ins_without_phone_per_day):
            path = [Stop(zone.street, 1), Stop(zone.entrance, rng.randint(3, 15)), Stop(zone.street, 1)]
            add("no_phone", None, arrival(), path)
    return people


class _ZoneNames:
    """The simulator's roles for the layout's zones: street, the entrance zone, the back zone."""

    def __init__(self, layout: StoreLayout) -> None:
        outside = [z.zone_id for z in layout.zones if not z.inside]
        inside = [z.zone_id for z in layout.zones if z.inside]
        if len(outside) != 1 or len(inside) != 2:
            raise ValueError("the simulator's people need one outside zone and two inside zones")
        self.street = outside[0]
        self.inside = inside
        self.entrance, self.back = inside


class _PhoneMaker:
    def __init__(self, rng: random.Random, config: ScenarioConfig) -> None:
        self._rng = rng
        self._config = config
        self._next_id = 1
        self._model_weights = [1 / (rank + 1) ** config.model_skew for rank in range(config.models)]

    def make(self, randomized: bool | None = None, rotate: bool = True, interval_s: int | None = None) -> Phone:
        rng, config = self._rng, self._config
        if randomized is None:
            randomized = rng.random() < config.randomized_share
        phone = Phone(
            phone_id=self._next_id,
            model=rng.choices(range(config.models), self._model_weights)[0],
            randomized=randomized,
            rotate_every_s=config.rotate_every_s if randomized and rotate else None,
            probe_interval_s=interval_s or config.probe_interval_s,
            keeps_sequence=rng.random() < 0.5,
        )
        self._next_id += 1
        return phone


def _local_s(day: date, hour: int, time_zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(hour), time_zone).timestamp())
