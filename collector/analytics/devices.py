"""Site-wide device identity: merge the edge's MAC clusters across sensors.

Each sensor links the randomised MACs it hears into clusters and names a
cluster after the pseudonym of its first MAC (``edge_agent.wifi.linker``).
Two sensors of one site name a phone alike when they first heard it on the
same MAC; when they did not, their clusters still share the MAC pseudonyms
both heard. Union-find over (key epoch, pseudonym) joins every cluster with
its MACs, so clusters that share any MAC become one device, whichever sensor
made them. The device id is the smallest pseudonym in the component: the same
whatever order rows arrive in, so late data cannot rename a device.

A wrong link on one sensor merges two devices site-wide; the edge linker is
conservative for that reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class DeviceSighting(NamedTuple):
    """The columns of ``wifi_sightings`` the analytics need."""

    sensor: str
    key_epoch: int
    start_s: int
    window_s: int
    pseudonym: int
    cluster: int
    rssi_max: int | None


DeviceKey = tuple[int, int]  # (key_epoch, pseudonym)


class DeviceIndex:
    """Maps (key epoch, MAC pseudonym) to a site-wide device id."""

    def __init__(self, sightings: Iterable[DeviceSighting] = ()) -> None:
        self._parent: dict[DeviceKey, DeviceKey] = {}
        self.add(sightings)

    def add(self, sightings: Iterable[DeviceSighting]) -> None:
        for sighting in sightings:
            self.link(sighting.key_epoch, sighting.pseudonym, sighting.cluster)

    def link(self, key_epoch: int, pseudonym: int, cluster: int) -> None:
        """Record that a sensor linked MAC ``pseudonym`` to ``cluster`` (as stored in ``wifi_mac_hours``)."""
        self._union((key_epoch, pseudonym), (key_epoch, cluster))

    def device_of(self, key_epoch: int, pseudonym: int) -> int:
        """The device id of a MAC pseudonym; a pseudonym never seen is its own device."""
        return self._root((key_epoch, pseudonym))[1]

    @property
    def devices(self) -> int:
        return len({self._root(key) for key in self._parent})

    def _root(self, key: DeviceKey) -> DeviceKey:
        parent = self._parent
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while key != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    def _union(self, first: DeviceKey, second: DeviceKey) -> None:
        self._parent.setdefault(first, first)
        self._parent.setdefault(second, second)
        a, b = self._root(first), self._root(second)
        if a != b:
            low, high = (a, b) if a[1] < b[1] else (b, a)
            self._parent[high] = low
