"""MQTT side of the collector: receive batches and statuses, acknowledge only what is committed.

paho-mqtt runs its own network thread (``loop_start``); every received
message is handed to the asyncio loop with ``call_soon_threadsafe``, and the
asyncio side calls :meth:`MqttConsumer.ack` once the message's group is
committed. Acks go out strictly in arrival order because the pipeline commits
and acks whole groups in the order it received them.

Connection states (:class:`~collector.state.ConnectionState`)::

    CONNECTING ──CONNACK ok──▶ CONNECTED ──socket lost / DISCONNECT──▶ DISCONNECTED
        ▲                                                                   │
        └──────────── backoff (exponential, ±50 % jitter) ◀─────────────────┘

What happens to a message if the connection drops:

* not yet committed — it stays unacknowledged in the broker's persistent
  session (MQTT 5 ``clean_start=False`` + session expiry; 3.1.1
  ``clean_session=False``, see ``MqttConfig.version``) and is redelivered after
  the reconnect; the first copy still gets committed, the second is counted
  as a duplicate.
* committed but not yet acked — its ack is *not* sent on the new connection
  (:attr:`InboundMessage.connection` no longer matches): a packet id of the
  old connection may by then name a different message. The broker redelivers
  it and the duplicate is acked instead.

Reconnecting uses paho's own loop, with the delay of each attempt set through
``reconnect_delay_set(d, d)`` from our backoff so that many collectors restarted
together do not reconnect in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.config import MqttConfig
from collector.state import ConnectionState
from shared.protocol import encode_ack
from shared.topics import BATCH_SUBSCRIPTION, STATUS_SUBSCRIPTION, ack_topic, shared_subscription

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as received; ``mid``/``qos``/``connection`` are what acking it needs."""

    topic: str
    payload: bytes
    received_at_s: float
    mid: int
    qos: int
    #: Which connection delivered it: acks are only valid on that connection.
    connection: int
    #: A stored retained copy (e.g. a device's status on a fresh subscription), not a live publish.
    retained: bool = False
    #: How long that connection had been up: messages right after a connect may be a queued backlog.
    connected_for_s: float = 0.0


class Backoff:
    """Exponential backoff with ±50 % jitter: min, 2·min, 4·min … capped at max."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self._min_s, self._max_s = min_s, max_s
        self._next_s = min_s

    def reset(self) -> None:
        self._next_s = self._min_s

    def next_delay_s(self) -> float:
        delay_s = self._next_s * random.uniform(0.5, 1.5)
        self._next_s = min(self._max_s, self._next_s * 2)
        return delay_s


class MqttConsumer:
    """Subscribes to every device's batches and statuses; acks and publishes device acks."""

    def __init__(
        self,
        config: MqttConfig,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[InboundMessage], None],
        on_state: Callable[[ConnectionState], None],
    ) -> None:
        self._config = config
        self._loop = loop
        self._deliver = deliver
        self._on_state = on_state
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._mqtt5 = config.version == 5
        self._connection = 0
        self._connected_at_s = time.monotonic()
        self._connection_lock = threading.Lock()
        self._stopping = False
        self._pending_publishes: dict[int, mqtt.MQTTMessageInfo] = {}
        #: Monotonic time of the last connection attempt's outcome; the health check reads it.
        self.last_attempt_s = time.monotonic()
        self._client = self._make_client()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background; returns at once (state goes CONNECTING → CONNECTED)."""
        self._client.reconnect_delay_set(0, 0)  # the first attempt is immediate; later ones use our backoff
        if self._mqtt5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self._config.session_expiry_s
            properties.ReceiveMaximum = self._config.receive_maximum
            self._client.connect_async(
                self._config.host,
                self._config.port,
                keepalive=self._config.keepalive_s,
                clean_start=False,
                properties=properties,
            )
        else:  # the persistent session was asked for when the client was made (clean_session=False)
            self._client.connect_async(self._config.host, self._config.port, keepalive=self._config.keepalive_s)
        self._set_state(ConnectionState.CONNECTING)
        self._client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Flush device acks, disconnect cleanly (the session stays on the broker), join the thread.

        Blocking: call it through ``asyncio.to_thread``.
        """
        deadline_s = time.monotonic() + timeout_s
        for info in list(self._pending_publishes.values()):
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                break
            try:
                info.wait_for_publish(remaining_s)
            except (RuntimeError, ValueError):
                pass  # not connected: the device ack is republished with the next commit
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._set_state(ConnectionState.DISCONNECTED)

    @property
    def thread_alive(self) -> bool:
        """paho's network thread runs (it dies if a callback raises); paho keeps it in ``_thread``."""
        thread = getattr(self._client, "_thread", None)
        return thread is not None and thread.is_alive()

    # ------------------------------------------------------------------ asyncio side

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge a committed message to the broker (PUBACK), if its connection is still the current one."""
        if message.qos == 0:
            return
        with self._connection_lock:
            if message.connection == self._connection:
                self._client.ack(message.mid, message.qos)

    def publish_device_ack(self, site_id: str, device_id: str, acked_seq: int) -> None:
        """Tell a device that every batch up to ``acked_seq`` is committed (retained, QoS 1)."""
        info = self._client.publish(ack_topic(site_id, device_id), encode_ack(acked_seq), qos=1, retain=True)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._pending_publishes[info.mid] = info

    # ------------------------------------------------------------------ paho thread

    def _make_client(self) -> mqtt.Client:
        # MQTT 5 asks for the persistent session at CONNECT (clean_start=False), 3.1.1 here.
        version: dict[str, Any] = (
            {"protocol": mqtt.MQTTv5} if self._mqtt5 else {"protocol": mqtt.MQTTv311, "clean_session": False}
        )
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self._config.client_id, manual_ack=True, **version
        )
        if self._config.tls:
            client.tls_set(
                ca_certs=str(self._config.ca_path) if self._config.ca_path else None,
                certfile=str(self._config.cert_path) if self._config.cert_path else None,
                keyfile=str(self._config.key_path) if self._config.key_path else None,
            )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _new_connection(self) -> None:
        with self._connection_lock:
            self._connection += 1

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any
    ) -> None:
        self.last_attempt_s = time.monotonic()
        if reason.is_failure:
            log.warning("mqtt=refused reason=%s", reason)
            self._schedule_reconnect()
            return
        self._new_connection()
        self._connected_at_s = time.monotonic()
        self._backoff.reset()
        batches = shared_subscription(BATCH_SUBSCRIPTION, self._config.shared_group)
        if self._mqtt5:
            # retainHandling=1: retained statuses only on a new subscription, not on every session resume.
            client.subscribe(
                [(batches, SubscribeOptions(qos=1)), (STATUS_SUBSCRIPTION, SubscribeOptions(qos=1, retainHandling=1))]
            )
        else:  # retained statuses come again on each resume; ingest dates a device's clock only by live ones
            client.subscribe([(batches, 1), (STATUS_SUBSCRIPTION, 1)])
        log.info(
            "mqtt=connected host=%s port=%d session_present=%s subscription=%s",
            self._config.host, self._config.port, _flags.session_present, batches,
        )  # fmt: skip
        self._set_state(ConnectionState.CONNECTED)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self.last_attempt_s = time.monotonic()
        log.warning("mqtt=connect_failed host=%s port=%d", self._config.host, self._config.port)
        self._schedule_reconnect()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any
    ) -> None:
        # Before paho's reconnect clears its send queue: acks of this connection end here.
        self.last_attempt_s = time.monotonic()
        self._new_connection()
        self._set_state(ConnectionState.DISCONNECTED)
        self._pending_publishes.clear()
        if self._stopping:
            log.info("mqtt=disconnected reason=%s", reason)
            return
        log.warning("mqtt=disconnected reason=%s", reason)
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        delay_s = self._backoff.next_delay_s()
        self._client.reconnect_delay_set(delay_s, delay_s)  # type: ignore[arg-type]  # floats work
        self._set_state(ConnectionState.CONNECTING)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "(topic is not UTF-8)"
        if not any(mqtt.topic_matches_sub(sub, topic) for sub in (BATCH_SUBSCRIPTION, STATUS_SUBSCRIPTION)):
            # Not from a device: a broker may only send what we subscribed to, but amqtt
            # resends our own in-flight acks to us after a session resume.
            log.warning("mqtt=unsubscribed_topic topic=%r action=acked_and_dropped", topic)
            client.ack(message.mid, message.qos)
            return
        inbound = InboundMessage(
            topic,
            message.payload,
            time.time(),
            message.mid,
            message.qos,
            self._connection,
            bool(message.retain),
            time.monotonic() - self._connected_at_s,
        )
        self._call_in_loop(self._deliver, inbound)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _properties: Any) -> None:
        self._pending_publishes.pop(mid, None)

    def _set_state(self, state: ConnectionState) -> None:
        self._call_in_loop(self._on_state, state)

    def _call_in_loop(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the event loop is closed: the process is exiting and the message stays unacked
