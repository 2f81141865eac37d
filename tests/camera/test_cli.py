"""The installer's side: calibrate's PNG and advice, config mistakes, and camera state in the agent status."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import cv2
import pytest
import yaml

from edge_agent.cli import main
from edge_agent.config import load_agent_config
from edge_agent.service import AgentService
from shared.config import ConfigError
from shared.protocol import decode_body, open_message
from tests.realdata import require_real_data


def write_config(tmp_path: Path, **camera: object) -> Path:
    path = tmp_path / "agent.yaml"
    document = {"site_id": "lab", "device_id": "door1", "state_dir": str(tmp_path / "state"), "camera": camera,
                "mqtt": {"port": 1, "reconnect_min_s": 0.1, "reconnect_max_s": 0.2}}  # fmt: skip
    path.write_text(yaml.safe_dump(document))
    return path


def test_calibrate_writes_a_local_png_with_the_counts_and_prints_advice(tmp_path, capsys):
    video = require_real_data("video/femb_peopleCounter.avi")
    config = write_config(tmp_path, line={"points": [[0, 0.5], [1, 0.5]]}, person={"width_frac": 0.3, "height_frac": 0.3})
    assert main(["--config", str(config), "calibrate", "--source", str(video), "--seconds", "12"]) == 0
    out = capsys.readouterr().out
    picture = cv2.imread(str(tmp_path / "state" / "calibrate.png"))
    assert picture is not None and picture.shape[:2] == (240, 320), "drawn at the processing size the counter uses"
    assert "stays on this device" in out
    assert "set camera.person.width_frac" in out, "0.3 x 0.3 is far off the people in this clip"
    assert "line 'door': in " in out


def test_calibrate_without_a_picture_says_what_to_check(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["--config", str(config), "calibrate", "--source", str(tmp_path / "missing.avi"), "--seconds", "1"]) == 1
    assert "no picture" in capsys.readouterr().out
    assert not (tmp_path / "state" / "calibrate.png").exists()


@pytest.mark.parametrize(
    ("camera", "message"),
    [
        ({"enabled": True}, "camera.source is required"),
        ({"line": {"in_side": "inside"}}, "camera.line.in_side: got 'inside'"),
        ({"line": {"points": [[0, 0.5]]}}, "two or more"),
        ({"line": {"band_frac": 0.9}}, "band_frac"),
        ({"person": {"width_frac": "wide"}}, "camera.person.width_frac: expected a number"),
        ({"pace": "fast"}, "use one of 'native', 'max'"),
    ],
)
def test_config_mistakes_name_the_key_and_the_fix(tmp_path, camera, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_agent_config(write_config(tmp_path, **camera))


def test_replay_refuses_a_missing_video(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["--config", str(config), "replay", "--video", str(tmp_path / "none.mp4")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_an_unreachable_camera_is_reported_in_the_status_and_the_agent_keeps_running(tmp_path):
    config_path = write_config(tmp_path, enabled=True, source="rtsp://127.0.0.1:1/door", reconnect_min_s=0.05,
                               reconnect_max_s=0.1, stall_s=0.5)  # fmt: skip
    assert main(["--config", str(config_path), "keygen"]) == 0
    service = AgentService(load_agent_config(config_path))
    service.start()
    runner = threading.Thread(target=service.run_camera)
    runner.start()
    try:
        time.sleep(1.0)
        camera = service.status()["camera"]
        assert camera["state"] in ("connecting", "reconnecting")
        assert camera["frames"] == 0 and "cannot open" in camera["last_error"]
        assert runner.is_alive(), "a dead camera does not end the agent"
    finally:
        service.stop()
        runner.join(10)
        service.close()
    assert not runner.is_alive()


@pytest.mark.slow
def test_crossings_counted_while_wifi_runs_reach_the_spool_through_the_queue(tmp_path):
    """The camera thread never touches the batcher: its rows are handed over by the Wi-Fi loop's pump."""
    video = require_real_data("video/femb_peopleCounter.avi")
    config_path = write_config(tmp_path, enabled=True, source=str(video), pace="max",
                               line={"points": [[0, 0.5], [1, 0.5]]}, person={"width_frac": 0.11, "height_frac": 0.2})  # fmt: skip
    assert main(["--config", str(config_path), "keygen"]) == 0
    service = AgentService(load_agent_config(config_path))
    service.start()

    def idle_wifi():
        """Frames that are not probe requests, for as long as the camera is busy."""
        while service.camera.running:
            for _ in range(512):
                yield time.time(), 0, b"\x00" * 16
            time.sleep(0.01)

    try:
        service.run_wifi(idle_wifi(), live=True)
        counted = service.camera.crossings
        spooled = _spooled_crossings(tmp_path / "state" / "spool.sqlite3")
    finally:
        service.close()
    assert counted["in"] + counted["out"] >= 6
    assert sorted(row.direction for row in spooled) == sorted(["in"] * counted["in"] + ["out"] * counted["out"])


def _spooled_crossings(spool: Path) -> list:
    with sqlite3.connect(spool) as db:
        messages = [row[0] for row in db.execute("SELECT message FROM batches ORDER BY seq")]
    blocks = [decode_body(open_message(message).body).crossings for message in messages]
    return [row for block in blocks if block is not None for row in block.rows]
