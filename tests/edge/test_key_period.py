"""The key period is configured once (pseudonym.period_s), written by keygen and enforced at start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.realdata import require_real_data

THIRTY_DAYS_S = 30 * 86_400


def agent(config: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "edge_agent", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def write_config(tmp_path: Path, period_s: int) -> Path:
    config = tmp_path / "agent.yaml"
    document = {"site_id": "lab", "device_id": "pos1", "state_dir": str(tmp_path / "state")}
    config.write_text(yaml.safe_dump({**document, "pseudonym": {"period_s": period_s}}))
    return config


def test_keygen_writes_the_configured_period(tmp_path):
    config = write_config(tmp_path, THIRTY_DAYS_S)
    result = agent(config, "keygen", "--pseudonym-start", "2022-11-22")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "state" / "pseudonym.key").read_text())["period_s"] == THIRTY_DAYS_S
    assert f"period {THIRTY_DAYS_S} s" in result.stdout


def test_a_key_file_of_another_period_is_refused_with_the_fix(tmp_path):
    capture = require_real_data("wifi/polimi/iPhoneXR-A_anonymized.pcap")
    config = write_config(tmp_path, THIRTY_DAYS_S)
    assert agent(config, "keygen", "--pseudonym-start", "2023-05-29", "--period-s", "86400").returncode == 0
    result = agent(config, "replay", "--pcap", str(capture), "--wait-acked-s", "0")
    assert result.returncode == 2
    assert "key period is 86400 s" in result.stderr and "set pseudonym.period_s: 86400" in result.stderr
