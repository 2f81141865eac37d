"""The shipped Mosquitto configuration and ACL with certificates made by `footfall provision`.

A real Mosquitto runs deploy/mosquitto/footfall.conf (only its listener
address and certificate paths changed to this test's) with the shipped ACL.
A device may publish to its own topics only, a certificate from another CA
is refused, and the real collector process — with its own certificate —
commits a device's batches and acks them on the device's ack topic.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.cli import main as collector_cli
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink, UplinkConfig
from shared.devstack import MosquittoBroker
from shared.protocol import Batch, CrossingRow, Crossings, encode_body, frame_message
from shared.signing import DeviceSigner
from shared.topics import BATCH_SUBSCRIPTION, batch_topic

from tests.deploy.deploy_helpers import SITE


class TlsClient:
    """An MQTT client with a client certificate; records CONNACK and messages."""

    def __init__(self, broker: MosquittoBroker, ca: Path, cert: Path | None, key: Path | None, v5: bool = False) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.changed = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        )
        self.client.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: None if reason.is_failure else self.connected.set()
        self.client.on_message = self._on_message
        self.error: Exception | None = None
        try:
            self.client.connect(broker.host, broker.port, keepalive=10)
        except (OSError, ssl.SSLError) as exc:
            self.error = exc
            return
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.messages.append((message.topic, message.payload))
            self.changed.notify_all()

    def wait_connected(self, timeout_s: float = 5.0) -> bool:
        return self.error is None and self.connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def wait_for_topic(self, topic: str, timeout_s: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: any(t == topic for t, _ in self.messages), timeout_s), self.messages

    def close(self) -> None:
        if self.error is None:
            self.client.loop_stop()
            self.client.disconnect()


def device_client(broker: MosquittoBroker, fleet: Path, device: str, ca_fleet: Path | None = None) -> TlsClient:
    bundle = fleet / "devices" / SITE / device
    return TlsClient(broker, (ca_fleet or fleet) / "ca" / "fleet-ca.crt", bundle / "mqtt-client.crt", bundle / "secrets" / "mqtt-client.key")


def collector_client(broker: MosquittoBroker, fleet: Path) -> TlsClient:
    directory = fleet / "collectors" / "c1"
    return TlsClient(broker, directory / "fleet-ca.crt", directory / "collector-mqtt.crt", directory / "collector-mqtt.key", v5=True)


def test_a_device_publishes_to_its_own_topics_only(tls_broker: MosquittoBroker, fleet: Path) -> None:
    watcher = collector_client(tls_broker, fleet)
    d1 = device_client(tls_broker, fleet, "d1")
    try:
        assert watcher.wait_connected() and d1.wait_connected()
        watcher.client.subscribe(BATCH_SUBSCRIPTION, qos=1)
        time.sleep(0.3)  # SUBACK
        d1.publish(batch_topic(SITE, "d2"), b"forged")  # Mosquitto PUBACKs and drops it (MQTT 3.1.1)
        d1.publish(f"footfall/v1/{SITE}/d1/ack", b"self-ack")  # nor may a device ack itself
        d1.publish(batch_topic(SITE, "d1"), b"own")
        watcher.wait_for_topic(batch_topic(SITE, "d1"))
        time.sleep(0.3)
        assert watcher.messages == [(batch_topic(SITE, "d1"), b"own")]
    finally:
        d1.close()
        watcher.close()


def test_a_certificate_from_another_ca_is_refused(tls_broker: MosquittoBroker, fleet: Path, foreign_fleet: Path) -> None:
    # Same CN (store-1/d1), trusting our broker's CA, but signed by another fleet's CA.
    intruder = device_client(tls_broker, foreign_fleet, "d1", ca_fleet=fleet)
    anonymous = TlsClient(tls_broker, fleet / "ca" / "fleet-ca.crt", None, None)
    genuine = device_client(tls_broker, fleet, "d1")
    try:
        assert genuine.wait_connected()
        assert not intruder.wait_connected(3.0)
        assert not anonymous.wait_connected(1.0)
    finally:
        for client in (intruder, anonymous, genuine):
            client.close()
    assert "certificate verify failed" in tls_broker.log_path.read_text() or "unknown ca" in tls_broker.log_path.read_text().lower()


def signed_batch(fleet: Path, seq: int, spool_floor: int) -> bytes:
    signer = DeviceSigner.from_file(fleet / "devices" / SITE / "d1" / "secrets" / "device.key")
    now_s = time.time()
    batch = Batch(SITE, "d1", seq, now_s, 0, spool_floor, crossings=Crossings([CrossingRow(now_s, "door", "in", seq)]))
    body = encode_body(batch)
    return frame_message(body, signer.sign(body))


def test_the_collector_receives_and_acks_a_device_over_tls(
    tls_broker: MosquittoBroker, fleet: Path, pg_dsn: str, tmp_path: Path
) -> None:
    for argv in (
        ["migrate"],
        ["site", "add", SITE, "--time-zone", "Europe/Prague"],
        ["device", "enroll", "--from-record", str(fleet / "enrollments" / f"{SITE}.d1.json")],
    ):
        assert collector_cli([*argv, "--dsn", pg_dsn]) == 0, argv

    collector_dir = fleet / "collectors" / "c1"
    config = tmp_path / "collector.yaml"
    config.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {tls_broker.port}, client_id: c1, tls: true,"
        f" ca_path: {collector_dir}/fleet-ca.crt, cert_path: {collector_dir}/collector-mqtt.crt,"
        f" key_path: {collector_dir}/collector-mqtt.key}}\nhttp: {{port: 0}}\n"
    )
    collector_log = tmp_path / "collector.log"
    collector = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(config)],
        env={**os.environ, "FOOTFALL_DATABASE_DSN": pg_dsn}, stdout=collector_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    bundle = fleet / "devices" / SITE / "d1"
    spool = Spool(tmp_path / "spool.sqlite3")
    uplink = Uplink(
        UplinkConfig(
            host="127.0.0.1", port=tls_broker.port, tls=True, ca_path=bundle / "fleet-ca.crt",
            cert_path=bundle / "mqtt-client.crt", key_path=bundle / "secrets" / "mqtt-client.key",
            reconnect_max_s=1.0, ack_timeout_s=3.0,
        ),
        spool, SITE, "d1",
    )  # fmt: skip
    try:
        for _ in range(3):
            spool.append(lambda seq, floor: signed_batch(fleet, seq, floor), events=1)
        deadline_s = time.monotonic() + 30
        while "mqtt=connected" not in collector_log.read_text():  # its subscription comes with the connection
            assert time.monotonic() < deadline_s and collector.poll() is None, collector_log.read_text()
            time.sleep(0.1)
        uplink.start()
        # The device's spool empties only when the collector's ack arrives on footfall/v1/store-1/d1/ack.
        assert uplink.wait_idle(30), f"{uplink.stats()}\n{collector_log.read_text()}"
        assert uplink.stats().acked_seq == 3
        assert asyncio.run(committed_batches(pg_dsn)) == [1, 2, 3]
    finally:
        uplink.stop()
        spool.close()
        collector.terminate()
        collector.wait(30)
    assert collector.returncode == 0, collector_log.read_text()


async def committed_batches(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT batch_seq FROM footfall.ingest_batches WHERE site_id = $1 AND device_id = 'd1' ORDER BY 1", SITE
        )
        return [row["batch_seq"] for row in rows]
    finally:
        await connection.close()
