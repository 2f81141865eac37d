"""A throwaway MQTT broker for tests and `make demo`: Mosquitto, or amqtt as fallback.

Production runs Mosquitto, so tests do too whenever the binary exists. On a
machine without it, amqtt (pure Python, from the `demo` extra) stands in,
with the gaps listed on `AmqttBroker`. Both listen on a free loopback port
and can be stopped, killed and restarted on the same port for chaos tests.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol

from shared.devstack.lifecycle import ManagedService
from shared.devstack.ports import port_accepts
from shared.devstack.processes import ServiceProcess

log = logging.getLogger(__name__)

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerStartError(RuntimeError):
    """The broker exited or never listened; the message carries the tail of its log."""


class Broker(Protocol):
    """What tests and the demo may rely on, whichever broker runs."""

    host: str
    survives_restart: bool
    mqtt5: bool
    shared_subscriptions: bool

    @property
    def port(self) -> int: ...
    def start(self) -> Broker: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def restart(self) -> None: ...
    def is_running(self) -> bool: ...
    def close(self) -> None: ...


class _BrokerProcess(ManagedService):
    """What both brokers share beyond the lifecycle: a state directory, the log, launch from an argv."""

    start_error = BrokerStartError
    survives_restart: ClassVar[bool]
    mqtt5: ClassVar[bool]
    shared_subscriptions: ClassVar[bool]

    def __init__(self, state_dir: Path | str | None, port: int | None, startup_timeout_s: float) -> None:
        super().__init__(port, startup_timeout_s)
        if state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix=f"footfall-{self.name}-"))
            self._own_temporary_dir(self.state_dir)
        else:
            self.state_dir = Path(state_dir).absolute()
            self.state_dir.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM and wait; the broker saves its state on the way out."""
        self._stop_with(signal.SIGTERM, timeout_s)

    def _launch(self) -> None:
        self._process = ServiceProcess(self._argv(), self.log_path, cwd=self.state_dir)
        self._wait_until_serving(lambda: port_accepts(self.host, self.port))
        log.info("%s broker listening on %s:%d, state in %s", self.name, self.host, self.port, self.state_dir)

    def _argv(self) -> list[str]:
        raise NotImplementedError


def find_mosquitto() -> Path | None:
    """The mosquitto binary on PATH or in the Debian location, if installed."""
    found = shutil.which("mosquitto")
    if found is not None:
        return Path(found)
    return next((Path(path) for path in MOSQUITTO_PATHS if os.access(path, os.X_OK)), None)


class MosquittoBroker(_BrokerProcess):
    """Mosquitto with anonymous access (or the given listener settings) and on-disk persistence in `state_dir`.

    `global_settings` and `listener_settings` let a test run a shipped
    configuration (TLS, certificates, ACL) on a free loopback port: the
    listener line is always ours, the settings around it theirs.

    A graceful `stop()` saves every session and queued message; after
    `kill()` only what the last autosave (every `autosave_interval_s`) wrote
    survives — the broker crash that end-to-end acks must cover.
    """

    name = "mosquitto"
    survives_restart = True
    mqtt5 = True
    shared_subscriptions = True

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        port: int | None = None,
        autosave_interval_s: int = 30,
        max_inflight_messages: int = 20,
        max_queued_messages: int = 1_000_000,
        binary: Path | None = None,
        startup_timeout_s: float = 10.0,
        global_settings: Sequence[str] = (),
        listener_settings: Sequence[str] = ("allow_anonymous true",),
    ) -> None:
        binary = binary or find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto not found on PATH or in /usr/sbin; apt-get install mosquitto")
        self.binary = binary
        self.autosave_interval_s = autosave_interval_s
        self.max_inflight_messages = max_inflight_messages
        self.max_queued_messages = max_queued_messages
        self.global_settings = list(global_settings)
        self.listener_settings = list(listener_settings)
        super().__init__(state_dir, port, startup_timeout_s)

    @property
    def config_path(self) -> Path:
        return self.state_dir / "mosquitto.conf"

    def save_now(self, timeout_s: float = 5.0) -> None:
        """Write the persistence file now (SIGUSR1): a known snapshot for a later ``kill()`` to fall back to."""
        if self._process is None:
            raise RuntimeError("mosquitto is not running")
        database = self.state_dir / "mosquitto.db"
        before_ns = database.stat().st_mtime_ns if database.exists() else 0
        self._process.popen.send_signal(signal.SIGUSR1)
        deadline_s = time.monotonic() + timeout_s
        while not (database.exists() and database.stat().st_mtime_ns > before_ns):
            if time.monotonic() > deadline_s:
                raise TimeoutError(f"mosquitto did not write {database} within {timeout_s} s")
            time.sleep(0.01)

    def _argv(self) -> list[str]:
        self._write_config()
        return [str(self.binary), "-c", str(self.config_path)]

    def _write_config(self) -> None:
        lines = [
            *self.global_settings,
            f"listener {self.port} {self.host}",
            *self.listener_settings,
            "persistence true",
            f"persistence_location {self.state_dir}/",
            f"autosave_interval {self.autosave_interval_s}",
            f"max_queued_messages {self.max_queued_messages}",
            f"max_inflight_messages {self.max_inflight_messages}",
            # PUBACKs are tiny; Nagle would hold them back and throttle QoS 1.
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # Otherwise mosquitto drops to user `mosquitto`, which cannot
            # write the persistence file in our root-owned state directory.
            lines.append("user root")
        self.config_path.write_text("\n".join(lines) + "\n")


class AmqttBroker(_BrokerProcess):
    """amqtt 0.12 in a subprocess: the fallback when Mosquitto is not installed.

    What it does not do (checked with paho-mqtt 2.x):
    - MQTT 5: it speaks 3.1.1 only and refuses v5 CONNECTs; use
      `clean_session=False` rather than `clean_start` + session expiry.
    - Shared subscriptions: `$share/group/filter` is a literal filter that
      matches nothing, so scaled-out collectors receive nothing.
    - Persistence: sessions and queued messages live in memory only; any
      restart, graceful or not, starts empty (`survives_restart` is False).
    - Queued messages for an offline session are redelivered with the retain
      flag set.
    - Broker tuning: queue and in-flight limits and autosave do not exist;
      such options are accepted for interface parity and ignored.
    """

    name = "amqtt"
    survives_restart = False
    mqtt5 = False
    shared_subscriptions = False

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        port: int | None = None,
        startup_timeout_s: float = 20.0,
        **ignored: object,
    ) -> None:
        if ignored:
            log.info("amqtt has no equivalent of %s; ignoring", ", ".join(sorted(ignored)))
        super().__init__(state_dir, port, startup_timeout_s)

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "shared.devstack.amqtt_runner", "--host", self.host, "--port", str(self.port)]


def start_broker(**options: object) -> Broker:
    """Start Mosquitto if installed, else amqtt, and say which.

    `FOOTFALL_BROKER=mosquitto|amqtt` forces a choice (e.g. to test the
    fallback on a machine that has Mosquitto).
    """
    choice = os.environ.get("FOOTFALL_BROKER", "auto")
    if choice not in ("auto", "mosquitto", "amqtt"):
        raise ValueError(f"FOOTFALL_BROKER must be auto, mosquitto or amqtt, not {choice!r}")
    broker: _BrokerProcess
    if choice == "amqtt" or (choice == "auto" and find_mosquitto() is None):
        if choice == "auto":
            log.warning("mosquitto not installed; falling back to amqtt (MQTT 3.1.1 only, no persistence)")
        broker = AmqttBroker(**options)  # type: ignore[arg-type]
    else:
        broker = MosquittoBroker(**options)  # type: ignore[arg-type]
    try:
        broker.start()
    except BaseException:
        broker.close()
        raise
    log.info("using the %s broker on %s:%d", broker.name, broker.host, broker.port)
    return broker
