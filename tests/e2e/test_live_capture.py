"""`footfall-agent run` on a Wi-Fi adapter that is not there: it keeps running, says so and how to fix it."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from shared.topics import status_topic

pytestmark = pytest.mark.slow


class StatusWatcher:
    """Collects the agent's retained status messages as they change."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.statuses: list[dict] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="status-watcher")
        self.client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        with self._changed:
            self.statuses.append(json.loads(message.payload))
            self._changed.notify_all()

    def wait_for(self, predicate, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((s for s in self.statuses if predicate(s)), None)
                if found is not None or time.monotonic() > deadline:
                    assert found is not None, f"no such status in {self.statuses[-3:]}"
                    return found
                self._changed.wait(0.2)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def capture_state(status: dict) -> str | None:
    return status.get("wifi", {}).get("capture", {}).get("state")


def test_a_missing_adapter_is_reported_with_its_fix_and_the_agent_keeps_running(system, broker):
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    config = system.provision_device(
        "lab", "pos1", today, wifi={"interface": "ffnowifi0", "channels": [1, 6, 36]}, mqtt={"status_interval_s": 0.5}
    )
    watcher = StatusWatcher(broker.host, broker.port, status_topic("lab", "pos1"))
    log_path = system.workdir / "agent-run.log"
    with open(log_path, "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "edge_agent", "--config", str(config), "run"], stderr=log)
    try:
        missing = watcher.wait_for(lambda s: s.get("state") == "online" and capture_state(s) == "missing", 30)
        capture = missing["wifi"]["capture"]
        assert capture["interface"] == "ffnowifi0" and "plug the USB Wi-Fi adapter" in capture["fix"]
        assert capture["kernel_drops"] == 0 and capture["channel"] is None
        time.sleep(3.0)  # several retries later ...
        assert agent.poll() is None  # ... still running
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        watcher.wait_for(lambda s: s.get("state") == "offline", 10)
    finally:
        if agent.poll() is None:
            agent.kill()
        watcher.close()
    lines = [line for line in log_path.read_text().splitlines() if "wifi capture" in line]
    assert sum("wifi capture missing" in line for line in lines) == 1, lines  # one line per state change, not per retry
