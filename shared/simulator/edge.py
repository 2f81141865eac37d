"""A simulated store through the real edge Wi-Fi path: frames → parse → pseudonymise → sightings → linker.

For scenarios where de-randomisation is part of what is measured: the
sightings come from the same code a store device runs (one
:class:`~edge_agent.wifi.pipeline.WifiPath` per sensor, all sharing one key
like the sensors of a key group, daily key period), not from the simulator's
perfect linking.
"""

from __future__ import annotations

from edge_agent.wifi.linker import LinkerConfig
from edge_agent.wifi.pipeline import WifiPath
from shared.protocol import Batch
from shared.simulator.radio import EpochSighting
from shared.simulator.scenario import Scenario, sighting_batches


def edge_batches(
    scenario: Scenario, max_events: int = 500, batch_s: int | None = None, linker: LinkerConfig = LinkerConfig()
) -> list[Batch]:
    """Every device's batches as real edge devices would send them, in sending order (see :meth:`Scenario.batches`)."""
    layout = scenario.layout
    out = scenario.camera_batches(max_events, batch_s)
    for sensor in layout.sensors:
        path = WifiPath.for_benchmark(layout.window_s, linker)
        for frame in scenario.probe_frames(sensor):
            path.add_frame(*frame)
        rows = [EpochSighting(window.epoch, row) for window in path.flush_all() for row in window.rows]
        out += sighting_batches(layout.site_id, sensor, rows, layout.window_s, max_events, batch_s)
    return sorted(out, key=lambda batch: batch.created_at_s)
