"""Stationary devices: desktop PCs, printers, staff phones — present hour after hour.

They are not visitors, yet they probe all day and would sit in every visitor
metric. A device heard in at least ``min_hours`` distinct clock hours (UTC,
so a daylight-saving day needs no special case) of the period analysed is
stationary. The period cannot be longer than a pseudonym key period: after a
key rotation the same PC has a new pseudonym, so with the default daily key
this is a within-day test, and a longer key period enables the multi-day one
(a trade-off documented in docs/wifi.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from collector.analytics.devices import DeviceSighting

HOUR_S = 3_600


@dataclass(frozen=True)
class StationaryConfig:
    min_hours: int = field(default=6, metadata={"help": "distinct hours a device must be heard in to be stationary"})

    def __post_init__(self) -> None:
        if self.min_hours < 1:
            raise ValueError("min_hours must be at least 1")


def stationary_devices(
    sightings: Iterable[DeviceSighting],
    device_of: Callable[[int, int], int],
    config: StationaryConfig = StationaryConfig(),
) -> set[int]:
    """Devices heard (at any signal strength) in at least ``min_hours`` distinct hours."""
    hours: dict[int, set[int]] = defaultdict(set)
    for s in sightings:
        hours[device_of(s.key_epoch, s.pseudonym)].add(s.start_s // HOUR_S)
    return {device for device, heard in hours.items() if len(heard) >= config.min_hours}
