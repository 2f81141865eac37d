"""A simulated store over some days: people, what the devices send, and the truth."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shared.devstack.synthetic_capture import write_radiotap_pcap
from shared.protocol import Batch, CrossingRow, Crossings, Sightings, SightingRow
from shared.simulator import radio, truth
from shared.simulator.layout import StoreLayout
from shared.simulator.people import Person, ScenarioConfig, generate_people

#: A live device cuts a batch at most this long after its newest event.
BATCH_DELAY_S = 5.0


@dataclass
class DeviceBatches:
    """Numbers one device's batches the way its spool does: 1, 2, 3, …"""

    site_id: str
    device_id: str
    batches: list[Batch] = field(default_factory=list)

    def add(self, created_at_s: float, key_epoch: int, **blocks: object) -> None:
        seq = len(self.batches) + 1
        self.batches.append(Batch(self.site_id, self.device_id, seq, created_at_s, key_epoch, seq, **blocks))  # type: ignore[arg-type]


@dataclass
class Scenario:
    layout: StoreLayout
    config: ScenarioConfig
    people: list[Person]

    @classmethod
    def generate(cls, layout: StoreLayout, config: ScenarioConfig) -> Scenario:
        return cls(layout, config, generate_people(layout, config))

    # ------------------------------------------------------------------ what the edge sends

    def sightings(self) -> dict[str, list[radio.EpochSighting]]:
        return radio.sightings(self.layout, self.people, self.config.key_period_s, self.config.seed)

    def crossings(self) -> list[truth.Crossing]:
        return truth.crossings(self.layout, self.people)

    def batches(self, max_events: int = 500, batch_s: int | None = None) -> list[Batch]:
        """Every device's batches with perfectly linked sightings, in the order a live store would send them.

        A batch holds at most ``max_events`` rows and, with ``batch_s``, at
        most that many seconds of data (a live agent cuts on time too).
        """
        out = self.camera_batches(max_events, batch_s)
        for sensor, rows in self.sightings().items():
            out += sighting_batches(self.layout.site_id, sensor, rows, self.layout.window_s, max_events, batch_s)
        return sorted(out, key=lambda batch: batch.created_at_s)

    def camera_batches(self, max_events: int = 500, batch_s: int | None = None) -> list[Batch]:
        """The door camera's crossings, cut like :meth:`batches`."""
        camera = DeviceBatches(self.layout.site_id, self.layout.camera)
        chunk: list[CrossingRow] = []

        def cut() -> None:
            if chunk:
                camera.add(chunk[-1].t + BATCH_DELAY_S, 0, crossings=Crossings(rows=list(chunk)))
                chunk.clear()

        for track, crossing in enumerate(self.crossings()):
            if len(chunk) >= max_events or (batch_s is not None and chunk and crossing.t >= chunk[0].t + batch_s):
                cut()
            chunk.append(CrossingRow(crossing.t, self.layout.door_line, crossing.direction, track))
        cut()
        return camera.batches

    def probe_frames(self, sensor: str, rssi_noise_db: float = 2.0) -> list[radio.Frame]:
        """Raw probe requests heard by ``sensor``, for the real edge path."""
        return radio.probe_frames(self.layout, self.people, sensor, self.config.seed, rssi_noise_db)

    def write_pcap(self, sensor: str, path: Path) -> int:
        """``sensor``'s probe requests as a radiotap pcap, for ``footfall-agent replay``; returns the frame count."""
        return write_radiotap_pcap(path, ((t, frame) for t, _linktype, frame in self.probe_frames(sensor)))

    # ------------------------------------------------------------------ truth

    def truth_visits(self) -> list[truth.TruthVisit]:
        return truth.truth_visits(self.layout, self.people, self.config.key_period_s)

    def truth_footfall(self) -> dict[tuple[str, int], truth.TruthRow]:
        return truth.footfall(self.truth_visits(), self.crossings())

    def truth_devices_present(self, visitor_rssi_dbm: int = -65) -> dict[int, float]:
        return truth.devices_present(self.truth_visits(), self.layout, visitor_rssi_dbm)


def sighting_batches(
    site_id: str,
    device_id: str,
    rows: Iterable[radio.EpochSighting],
    window_s: int,
    max_events: int,
    batch_s: int | None = None,
) -> list[Batch]:
    """One sensor's sightings cut into batches of one key epoch, at most ``max_events`` rows and ``batch_s`` seconds."""
    device = DeviceBatches(site_id, device_id)
    chunk: list[SightingRow] = []
    chunk_epoch = None

    def cut() -> None:
        if chunk:
            device.add(chunk[-1].start_s + window_s + BATCH_DELAY_S, chunk_epoch, sightings=Sightings(rows=list(chunk), window_s=window_s))
            chunk.clear()

    for epoch_row in rows:
        too_long = batch_s is not None and chunk and epoch_row.row.start_s >= chunk[0].start_s + batch_s
        if epoch_row.key_epoch != chunk_epoch or len(chunk) >= max_events or too_long:
            cut()
            chunk_epoch = epoch_row.key_epoch
        chunk.append(epoch_row.row)
    cut()
    return device.batches
