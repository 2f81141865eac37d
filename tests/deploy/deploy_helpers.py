"""Helpers shared by the deployment tests: the test fleet's names and the provisioning CLI."""

from __future__ import annotations

from pathlib import Path

from shared.cli import main as footfall_cli

MOSQUITTO_DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
SITE = "store-1"


def provision(fleet: Path, *argv: str) -> None:
    assert footfall_cli(["provision", "--fleet", str(fleet), *argv]) == 0, argv
