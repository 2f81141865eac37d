"""Test helpers for the edge agent: real signed batches, a stand-in collector, status reads.

Also imported by ``edge_child.py``, so it must not need pytest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shared.protocol import (
    Batch,
    CrossingRow,
    Crossings,
    decode_body,
    decode_status,
    encode_ack,
    encode_body,
    frame_message,
    open_message,
)
from shared.signing import DeviceSigner
from shared.topics import ack_topic, batch_topic, status_topic

SITE, DEVICE = "shop1", "door1"
MakeMessage = Callable[[int, int], bytes]


def message_maker(signer: DeviceSigner, events: int = 3, line: str = "door") -> MakeMessage:
    """A ``make_message(seq, spool_floor)`` that signs a batch of ``events`` crossings."""

    def make(seq: int, spool_floor: int) -> bytes:
        now_s = time.time()
        rows = [CrossingRow(now_s, line, "in", track) for track in range(events)]
        batch = Batch(SITE, DEVICE, seq, now_s, 0, spool_floor, crossings=Crossings(rows=rows))
        body = encode_body(batch)
        return frame_message(body, signer.sign(body))

    return make


def decode_message(message: bytes) -> Batch:
    """Decode a stored message back into its batch (checks it is whole)."""
    return decode_body(open_message(message).body)


class FakeCollector:
    """Subscribes to one device's batches and acks like the collector: cumulatively, retained.

    ``committed_through`` follows the protocol: the contiguous run of received
    seqs, jumping over anything below a declared ``spool_floor``.
    """

    def __init__(self, host: str, port: int, acking: bool = True) -> None:
        self.acking = acking
        self.received: list[int] = []
        self.committed: set[int] = set()
        self.committed_through = 0
        self._changed = threading.Condition()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fake-collector")
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.1, 0.5)
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason_code: object, _p: object) -> None:
        client.subscribe(batch_topic(SITE, DEVICE), qos=1)

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        batch = decode_message(message.payload)
        with self._changed:
            self.received.append(batch.seq)
            self.committed.add(batch.seq)
            self.committed_through = max(self.committed_through, batch.spool_floor - 1)
            while self.committed_through + 1 in self.committed:
                self.committed_through += 1
            self._changed.notify_all()
        if self.acking:
            self.publish_ack(self.committed_through)

    def publish_ack(self, acked_seq: int) -> None:
        self._client.publish(ack_topic(SITE, DEVICE), encode_ack(acked_seq), qos=1, retain=True)

    def wait_for(self, predicate: Callable[["FakeCollector"], bool], timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def wait_for_status(host: str, port: int, state: str, timeout_s: float = 10.0) -> dict | None:
    """The test device's status once it says ``state`` (retained or live); ``None`` on timeout."""
    got: list[dict] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe(status_topic(SITE, DEVICE), qos=1)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        status = decode_status(message.payload)
        if status["state"] == state:
            got.append(status)
            done.set()

    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    try:
        done.wait(timeout_s)
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0] if got else None
