"""Soak: a real agent process with the broker gone until its spool is full, then the broker returns.

The spool's bound is 1 MiB and the capture makes several times that in
batches, so the oldest are evicted and counted while the broker is away;
the agent's memory must stay bounded meanwhile. When the broker comes back,
every batch still in the spool must reach the collector's subscription
exactly once, and nothing that was evicted may reappear.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.wifi.ratchet import KeyRatchet
from shared.devstack import MosquittoBroker
from shared.devstack.broker import find_mosquitto
from shared.devstack.synthetic_capture import write_synthetic_capture
from shared.protocol import decode_body, encode_ack, open_message
from shared.signing import DeviceSigner
from shared.topics import ack_topic, batch_topic

SITE, DEVICE = "soak-site", "soak-device"
SPOOL_BYTES = 1 << 20
#: The brief's edge memory target.
MAX_RSS_BYTES = 150 << 20

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_mosquitto() is None, reason="needs Mosquitto's persistent sessions; apt-get install mosquitto"),
]


class AckingSubscriber:
    """The collector's side of the protocol, counting every delivery: a persistent session that outlives the broker."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.deliveries: list[int] = []
        self.committed_through = 0
        self._committed: set[int] = set()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-collector", clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *_: client.subscribe(batch_topic(SITE, DEVICE), qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        batch = decode_body(open_message(message.payload).body)
        with self._lock:
            self.deliveries.append(batch.seq)
            self._committed.add(batch.seq)
            self.committed_through = max(self.committed_through, batch.spool_floor - 1)
            while self.committed_through + 1 in self._committed:
                self.committed_through += 1
            acked = self.committed_through
        client.publish(ack_topic(SITE, DEVICE), encode_ack(acked), qos=1, retain=True)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def spool_state(path: Path) -> tuple[list[int], int, int]:
    """(seqs stored, evicted batches, next seq), read-only beside the running agent."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        seqs = [row[0] for row in db.execute("SELECT seq FROM batches ORDER BY seq")]
        meta = dict(db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()
    return seqs, meta["evicted_batches"], meta["next_seq"]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_spool_bound_eviction_memory_and_exactly_once_after_the_outage(tmp_path: Path) -> None:
    start_s = time.time() - 7_200
    capture = tmp_path / "capture.pcap"
    write_synthetic_capture(capture, start_s, duration_s=3_600, phones=1_500)
    state = tmp_path / "state"
    DeviceSigner.generate().save(state / "device.key")
    KeyRatchet.create(state / "pseudonym.key", start_s)

    broker = MosquittoBroker(tmp_path / "broker").start()
    subscriber = AckingSubscriber(broker)
    process: subprocess.Popen[bytes] | None = None
    try:
        deadline_s = time.monotonic() + 10
        while not subscriber.client.is_connected():
            assert time.monotonic() < deadline_s, "subscriber never connected"
            time.sleep(0.05)
        time.sleep(0.3)  # SUBACK: the persistent session now holds the subscription
        broker.stop()  # the outage: the port stays ours, nobody listens

        config = tmp_path / "agent.yaml"
        config.write_text(
            f"site_id: {SITE}\ndevice_id: {DEVICE}\nstate_dir: {state}\n"
            f"mqtt: {{host: {broker.host}, port: {broker.port}, reconnect_min_s: 0.2, reconnect_max_s: 1.0}}\n"
            f"spool: {{max_bytes: {SPOOL_BYTES}}}\nbatch: {{max_events: 50}}\n"
        )
        log_path = tmp_path / "agent.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "--config", str(config), "replay", "--pcap", str(capture),
             "--speed", "max", "--wait-acked-s", "120"],
            stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip

        # Offline: wait until the whole capture is in the spool (next_seq stops moving), sampling memory.
        peak_rss, rss_at_first_eviction = 0, 0
        stable_since_s, last_next_seq = time.monotonic(), -1
        deadline_s = time.monotonic() + 300
        spool_path = state / "spool.sqlite3"
        while True:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline_s, log_path.read_text()[-3000:]
            peak_rss = max(peak_rss, rss_bytes(process.pid))
            if spool_path.exists():
                seqs, evicted, next_seq = spool_state(spool_path)
                if evicted and not rss_at_first_eviction:
                    rss_at_first_eviction = rss_bytes(process.pid)
                if next_seq != last_next_seq:
                    stable_since_s, last_next_seq = time.monotonic(), next_seq
                elif evicted and time.monotonic() - stable_since_s > 3:
                    break
            time.sleep(0.2)
        final_rss = rss_bytes(process.pid)

        assert evicted > 0 and seqs, "the capture did not overflow the spool"
        assert seqs == list(range(seqs[0], next_seq)), "the spool keeps a contiguous run of the newest batches"
        assert seqs[0] == evicted + 1, "exactly the oldest batches were evicted, and all of them counted"
        assert peak_rss <= MAX_RSS_BYTES, f"peak RSS {peak_rss >> 20} MiB"
        assert final_rss - rss_at_first_eviction < 16 << 20, "memory kept growing while evicting"

        broker.start()  # same port; the subscriber's session and subscription survived in the broker's store
        output = process.wait(180)
        assert output == 0, log_path.read_text()[-3000:]
        assert sorted(subscriber.deliveries) == seqs, "every spooled batch arrived once, nothing evicted came back"
        assert subscriber.committed_through == seqs[-1]
        assert spool_state(spool_path)[0] == []
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        subscriber.close()
        broker.close()
