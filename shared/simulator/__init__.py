"""A store simulator that knows the truth: it drives the analytics tests, the demo and the load benchmarks.

People with phones walk paths through the zones of a store (visitors,
browsers, passers-by on the street, staff, a desktop PC, people without a
phone), phones rotate randomised MACs, several sensors and a door camera
watch. The simulator produces what the edge devices would send — batches of
sightings and crossings (:meth:`Scenario.batches`), or raw probe requests for
the real edge path (:meth:`Scenario.probe_frames`, :func:`shared.simulator.edge.edge_batches`,
:meth:`Scenario.write_pcap`) — and the truth the tables must show
(:mod:`shared.simulator.truth`).

    scenario = Scenario.generate(two_sensor_shop(), ScenarioConfig(first_day=date(2024, 3, 5)))
    scenario.batches()            # protocol Batch objects, in sending order
    scenario.truth_visits()       # every visit, its zones, visitor / passer-by / stationary, returning
"""

from shared.simulator.layout import StoreLayout, ZoneSpec, two_sensor_shop
from shared.simulator.people import Person, Phone, ScenarioConfig, Stop
from shared.simulator.scenario import Scenario

__all__ = ["Person", "Phone", "Scenario", "ScenarioConfig", "Stop", "StoreLayout", "ZoneSpec", "two_sensor_shop"]
