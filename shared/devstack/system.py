"""A whole footfall system on one machine: real collector and agent processes.

The demo and the end-to-end tests both need the same steps — write configs,
migrate, add a site, make a device's keys and enroll them, start a collector
process, replay a capture through an agent process — so they live here once.
Processes are started as ``python -m collector`` / ``python -m edge_agent`` with
the current interpreter, so they run exactly the code under test.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from shared.devstack.ports import LOOPBACK, free_port


class StepFailed(RuntimeError):
    """A step of setting up the system failed; the message has the command's output."""


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise StepFailed(f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class CollectorProcess:
    """One ``footfall-collector run`` process with its log file and HTTP port."""

    config_path: Path
    log_path: Path
    http_port: int
    process: subprocess.Popen | None = None

    def start(self) -> "CollectorProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "collector", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until /readyz says the broker and the database are both connected."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise StepFailed(f"collector exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise StepFailed(f"collector not ready after {timeout_s} s:\n{self.log_tail()}")

    def metrics(self) -> str:
        """The collector's Prometheus text from /metrics."""
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def kill(self) -> None:
        """SIGKILL: the crash the collector must survive without losing or doubling anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class LocalSystem:
    """Configs and processes of one system under ``workdir``, against a database and a broker."""

    workdir: Path
    dsn: str
    broker_host: str
    broker_port: int
    #: False for the amqtt fallback: collectors then speak MQTT 3.1.1 (mqtt.version).
    broker_speaks_mqtt5: bool = True
    collectors: list[CollectorProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    # -- collector side -----------------------------------------------------------------

    def collector_cli(self, *args: str) -> str:
        return _run([sys.executable, "-m", "collector", *args], f"footfall-collector {' '.join(args)}")

    def write_collector_config(self, name: str = "collector", **sections: dict[str, Any]) -> tuple[Path, int]:
        http_port = free_port()
        config: dict[str, Any] = {
            "database": {"dsn": self.dsn},
            "mqtt": {
                "host": self.broker_host,
                "port": self.broker_port,
                "client_id": f"footfall-{name}",
                "version": 5 if self.broker_speaks_mqtt5 else "3.1.1",
            },
            "http": {"host": LOOPBACK, "port": http_port},
        }
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path, http_port

    def migrate(self) -> None:
        self.collector_cli("migrate", "--dsn", self.dsn)

    def add_site(self, site_id: str, time_zone: str, name: str | None = None) -> None:
        extra = ["--name", name] if name else []
        self.collector_cli("site", "add", site_id, "--time-zone", time_zone, "--dsn", self.dsn, *extra)

    def start_collector(self, name: str = "collector", **sections: dict[str, Any]) -> CollectorProcess:
        config_path, http_port = self.write_collector_config(name, **sections)
        collector = CollectorProcess(config_path, self.workdir / f"{name}.log", http_port).start()
        self.collectors.append(collector)
        collector.wait_ready()
        return collector

    # -- device side ----------------------------------------------------------------------

    def write_agent_config(self, site_id: str, device_id: str, **sections: Any) -> Path:
        state_dir = self.workdir / f"agent-{site_id}-{device_id}"
        config: dict[str, Any] = {
            "site_id": site_id,
            "device_id": device_id,
            "state_dir": str(state_dir),
            "mqtt": {"host": self.broker_host, "port": self.broker_port},
        }
        for key, value in sections.items():
            if isinstance(value, dict):
                config.setdefault(key, {}).update(value)
            else:
                config[key] = value
        path = self.workdir / f"agent-{site_id}-{device_id}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def provision_device(self, site_id: str, device_id: str, pseudonym_start: str, **sections: Any) -> Path:
        """Write the agent config, make its keys, enroll its public key; returns the config path."""
        config_path = self.write_agent_config(site_id, device_id, **sections)
        output = _run(
            [sys.executable, "-m", "edge_agent", "--config", str(config_path), "keygen", "--pseudonym-start", pseudonym_start],
            "footfall-agent keygen",
        )
        public_key = next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("public key: "))
        self.collector_cli("device", "enroll", site_id, device_id, f"--public-key={public_key}", "--dsn", self.dsn)
        return config_path

    def agent_replay_command(
        self,
        config_path: Path,
        recording: Path,
        speed: str = "max",
        wait_acked_s: float = 120,
        *,
        kind: Literal["pcap", "video"] = "pcap",
    ) -> list[str]:
        """``footfall-agent replay`` of a capture (``kind="pcap"``) or a door video (``kind="video"``)."""
        return [
            sys.executable, "-m", "edge_agent", "--config", str(config_path), "replay",
            f"--{kind}", str(recording), "--speed", speed, "--wait-acked-s", str(wait_acked_s),
        ]  # fmt: skip

    def agent_loadgen_command(
        self, config_path: Path, batches: int, rate_per_s: float | None = None, wait_acked_s: float = 120
    ) -> list[str]:
        """Synthetic batches through a real agent's spool and uplink (``shared/devstack/loadgen.py``)."""
        rate = ["--rate", str(rate_per_s)] if rate_per_s else []
        return [
            sys.executable, "-m", "shared.devstack.loadgen", "--config", str(config_path),
            "--batches", str(batches), *rate, "--wait-acked-s", str(wait_acked_s),
        ]  # fmt: skip

    def close(self) -> None:
        for collector in self.collectors:
            collector.stop()

