"""`make demo` as a newcomer runs it: the real capture and the door video through real agents, the tables printed.

Run once with whichever broker the machine has and once forced onto amqtt,
the fallback of a machine without Mosquitto (the collector then speaks
MQTT 3.1.1).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.demo import DEMO_CAPTURE, DEMO_VIDEO
from tests.realdata import require_real_data

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_the_demo_shows_every_frame_and_the_door_counts_in_the_tables(tmp_path: Path, broker: str) -> None:
    require_real_data(DEMO_CAPTURE)
    video = require_real_data(DEMO_VIDEO)
    if broker == "amqtt":
        pytest.importorskip("amqtt", reason="amqtt (the `demo` extra) is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "FOOTFALL_BROKER": broker},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "every frame of the capture accounted for" in output and "(0 in ingest_rejects)" in output

    labels = json.loads((video.parent / "labels.json").read_text())[video.name]["counts"]
    door = re.search(r"door_crossings\s+in (\d+) \(hand label (\d+)\), out (\d+) \(hand label (\d+)\)", output)
    assert door, output[-3000:]
    counted_in, label_in, counted_out, label_out = map(int, door.groups())
    assert (label_in, label_out) == (labels["down"], labels["up"])
    assert abs(counted_in - label_in) <= 1 and abs(counted_out - label_out) <= 1

    # footfall_hourly rows end "... entries exits": the door's crossings are there as entries and exits.
    hourly = re.findall(r"^\s+\d{4}-\d\d-\d\d \d\d:00 .*?(\d+)\s+(\d+)$", output, re.MULTILINE)
    assert sum(int(entries) for entries, _ in hourly) == counted_in
    assert sum(int(exits) for _, exits in hourly) == counted_out
