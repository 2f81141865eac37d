"""Edge-only fixtures. The ``broker`` fixture (a real Mosquitto) comes from ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.edge.edge_helpers import FakeCollector
from shared.signing import DeviceSigner


@pytest.fixture
def signer() -> DeviceSigner:
    return DeviceSigner.generate()


@pytest.fixture
def collector_factory(broker: object) -> Iterator[Callable[..., FakeCollector]]:
    made: list[FakeCollector] = []

    def make(acking: bool = True) -> FakeCollector:
        collector = FakeCollector(broker.host, broker.port, acking)  # type: ignore[attr-defined]
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()
