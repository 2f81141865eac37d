"""Trajectory: the ordered zones of one visit.

Consecutive moments in the same zone are one segment. A segment lasts until
the next one begins (the device walked from one zone to the other somewhere
in between), and the last one until the visit ends, so the segments of a
visit tile it exactly and their dwell adds up to the visit's dwell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from collector.analytics.zones import Moment


class Segment(NamedTuple):
    seq: int
    zone_id: str
    entered_s: int
    exited_s: int
    rssi_max: int | None

    @property
    def dwell_s(self) -> int:
        return self.exited_s - self.entered_s


def segments(visit_moments: Sequence[Moment]) -> list[Segment]:
    """The zone segments of one visit's moments (time-ordered, not empty)."""
    runs: list[list[Moment]] = []
    for moment in visit_moments:
        if runs and runs[-1][0].zone_id == moment.zone_id:
            runs[-1].append(moment)
        else:
            runs.append([moment])
    ends_s = [run[0].start_s for run in runs[1:]] + [visit_moments[-1].end_s]
    return [
        Segment(seq, run[0].zone_id, run[0].start_s, end_s, _loudest(run))
        for seq, (run, end_s) in enumerate(zip(runs, ends_s), start=1)
    ]


def _loudest(run: Sequence[Moment]) -> int | None:
    return max((m.rssi_max for m in run if m.rssi_max is not None), default=None)
