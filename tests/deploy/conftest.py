"""Deployment fixtures: a provisioned fleet and a real Mosquitto running the shipped TLS configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.devstack import MosquittoBroker
from shared.devstack.broker import find_mosquitto
from tests.deploy.deploy_helpers import MOSQUITTO_DEPLOY, SITE, provision


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    provision(root, "ca", "--name", "test")
    provision(root, "broker", "--host", "127.0.0.1")
    provision(root, "collector", "--name", "c1")
    provision(root, "key-group", SITE)
    for device in ("d1", "d2"):
        provision(root, "device", SITE, device, "--key-group", SITE, "--broker-host", "127.0.0.1")
    return root


@pytest.fixture(scope="module")
def foreign_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another fleet whose CA issues the very same CN: only the CA tells them apart."""
    root = tmp_path_factory.mktemp("foreign")
    provision(root, "ca", "--name", "foreign")
    provision(root, "key-group", SITE)
    provision(root, "device", SITE, "d1", "--key-group", SITE, "--broker-host", "127.0.0.1")
    return root


def shipped_settings(fleet: Path) -> tuple[list[str], list[str]]:
    """The shipped config split around its listener line, with this test's certificate and ACL paths."""
    lines = [line.strip() for line in (MOSQUITTO_DEPLOY / "footfall.conf").read_text().splitlines()]
    lines = [
        line.replace("/etc/mosquitto/certs/", f"{fleet}/broker/").replace("/etc/mosquitto/footfall.acl", str(MOSQUITTO_DEPLOY / "footfall.acl"))
        for line in lines
        if line and not line.startswith("#")
    ]
    at = lines.index("listener 8883")
    return lines[:at], lines[at + 1 :]


@pytest.fixture
def tls_broker(fleet: Path) -> Iterator[MosquittoBroker]:
    if find_mosquitto() is None:
        pytest.skip("the shipped configuration is Mosquitto's; apt-get install mosquitto")
    global_settings, listener_settings = shipped_settings(fleet)
    assert "require_certificate true" in listener_settings and "use_identity_as_username true" in listener_settings
    broker = MosquittoBroker(global_settings=global_settings, listener_settings=listener_settings)
    broker.start()
    yield broker
    broker.close()
