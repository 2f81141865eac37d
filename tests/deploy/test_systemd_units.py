"""The shipped systemd units pass `systemd-analyze verify` and the agent's scores ≤ 3.0 in `security`.

The units name /opt/footfall/venv as the installer lays it out; the test
checks copies whose ExecStart points at this checkout's virtualenv instead,
so `verify` can find the programs without touching /opt.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_BIN = "/opt/footfall/venv/bin/"
MAX_AGENT_EXPOSURE = 3.0


@pytest.fixture(scope="module")
def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd; .ci/run does it as root)")
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False).stdout.split()
    if len(version) < 2 or not version[1].isdigit() or int(version[1]) < 250:
        pytest.skip(f"systemd-analyze {version[1:2]} has no `security --offline` (needs systemd 250 or newer)")
    return tool


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("units")
    venv_bin = f"{Path(sys.executable).parent}/"
    copies = {}
    for unit in sorted(UNITS_DIR.glob("*.service")):
        text = unit.read_text()
        assert INSTALLED_BIN in text, f"{unit.name}: ExecStart should run {INSTALLED_BIN}..."
        copies[unit.name] = directory / unit.name
        copies[unit.name].write_text(text.replace(INSTALLED_BIN, venv_bin))
    assert set(copies) == {"footfall-agent.service", "footfall-collector.service"}
    return copies


def test_units_verify_cleanly(analyze: str, units: dict[str, Path]) -> None:
    result = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, units.values())], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert [line for line in (result.stdout + result.stderr).splitlines() if "footfall" in line] == []


def exposure(analyze: str, unit: Path) -> float:
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True, text=True, check=False
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match[1])


def test_agent_exposure_is_at_most_three(analyze: str, units: dict[str, Path]) -> None:
    assert exposure(analyze, units["footfall-agent.service"]) <= MAX_AGENT_EXPOSURE


def test_collector_exposure_is_lower_still(analyze: str, units: dict[str, Path]) -> None:
    # No capabilities, no raw sockets, no devices, a dynamic user.
    assert exposure(analyze, units["footfall-collector.service"]) < exposure(analyze, units["footfall-agent.service"])


def settings(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_agent_gets_only_the_capture_capabilities_and_a_watchdog(units: dict[str, Path]) -> None:
    agent = settings(units["footfall-agent.service"])
    assert agent["Type"] == ["notify"] and agent["WatchdogSec"] and agent["Restart"] == ["always"]
    assert agent["CapabilityBoundingSet"] == agent["AmbientCapabilities"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    assert {"AF_PACKET", "AF_NETLINK"} <= set(agent["RestrictAddressFamilies"][0].split())
    assert agent["User"] == ["footfall"] and agent["StateDirectory"] == ["footfall"]
    assert agent["ProtectSystem"] == ["strict"] and agent["NoNewPrivileges"] == ["yes"]
    assert {value.split(":")[0] for value in agent["LoadCredential"]} == {"device.key", "mqtt-client.key"}
