"""Both throwaway brokers really deliver QoS 1, keep offline sessions and restart in place.

Each capability flag on a broker (`survives_restart`, `mqtt5`,
`shared_subscriptions`) is checked against what it actually does, so tests
that skip on a flag skip for a true reason.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from shared.devstack import AmqttBroker, Broker, MosquittoBroker, start_broker
from shared.devstack.broker import _BrokerProcess, find_mosquitto
from shared.devstack.ports import port_accepts

TIMEOUT_S = 5.0
# amqtt handles a client's DISCONNECT asynchronously; publishing before it
# has would race with the session going offline.
SETTLE_S = 0.2


class Client:
    """A paho client on a background loop thread, collecting what it receives."""

    def __init__(
        self, port: int, client_id: str, *, persistent: bool = False, protocol: int = mqtt.MQTTv311
    ) -> None:
        options = {"clean_session": not persistent} if protocol == mqtt.MQTTv311 else {}
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **options)
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.disconnected = threading.Event()
        self.paho.on_message = lambda _client, _userdata, message: self.received.put(message)
        self.paho.on_connect = lambda _c, _u, _flags, reason, _props: self.connack.put(reason)
        self.paho.on_disconnect = lambda *_args: self.disconnected.set()
        self.paho.connect("127.0.0.1", port)
        self.paho.loop_start()

    def connected(self) -> bool:
        try:
            return not self.connack.get(timeout=TIMEOUT_S).is_failure
        except queue.Empty:
            return False

    def subscribe(self, topic_filter: str) -> None:
        granted: queue.Queue[object] = queue.Queue()
        self.paho.on_subscribe = lambda *args: granted.put(args)
        self.paho.subscribe(topic_filter, qos=1)
        granted.get(timeout=TIMEOUT_S)

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.paho.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published(), "no PUBACK"

    def payloads(self, count: int) -> list[bytes]:
        return [self.received.get(timeout=TIMEOUT_S).payload for _ in range(count)]

    def close(self) -> None:
        was_connected = self.paho.is_connected()
        self.paho.disconnect()  # also stops paho's automatic reconnects
        if was_connected:
            self.disconnected.wait(TIMEOUT_S)
        self.paho.loop_stop()


@pytest.fixture(params=["mosquitto", "amqtt"])
def any_broker(request: pytest.FixtureRequest) -> Iterator[_BrokerProcess]:
    """Each broker the devstack can start, whether or not start_broker would pick it."""
    if request.param == "mosquitto" and find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = MosquittoBroker() if request.param == "mosquitto" else AmqttBroker()
    with broker:
        yield broker


@pytest.fixture
def connect(any_broker: _BrokerProcess) -> Iterator[Callable[..., Client]]:
    """Connect clients to `any_broker`; all are closed after the test."""
    clients: list[Client] = []

    def make(client_id: str, **options: object) -> Client:
        client = Client(any_broker.port, client_id, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_qos1_round_trip(connect: Callable[..., Client]) -> None:
    subscriber = connect("collector")
    assert subscriber.connected()
    subscriber.subscribe("footfall/v1/+/+/batch")
    publisher = connect("device-1")
    assert publisher.connected()
    publisher.publish("footfall/v1/site-1/device-1/batch", b"batch 1")
    message = subscriber.received.get(timeout=TIMEOUT_S)
    assert (message.topic, message.payload, message.qos) == ("footfall/v1/site-1/device-1/batch", b"batch 1", 1)


def test_persistent_session_gets_messages_sent_while_offline(connect: Callable[..., Client]) -> None:
    subscriber = connect("collector", persistent=True)
    assert subscriber.connected()
    subscriber.subscribe("batches/#")
    subscriber.close()
    time.sleep(SETTLE_S)

    publisher = connect("device-1")
    assert publisher.connected()
    for n in range(3):
        publisher.publish("batches/device-1", b"%d" % n)

    subscriber = connect("collector", persistent=True)
    assert subscriber.connected()
    assert subscriber.payloads(3) == [b"0", b"1", b"2"]


def test_restart_keeps_the_port(any_broker: _BrokerProcess, connect: Callable[..., Client]) -> None:
    port = any_broker.port
    any_broker.kill()
    assert not any_broker.is_running()
    assert not port_accepts(any_broker.host, port)
    any_broker.start()
    any_broker.restart()
    assert any_broker.port == port and any_broker.is_running()

    subscriber = connect("collector")
    assert subscriber.connected()
    subscriber.subscribe("t")
    connect("device-1").publish("t", b"after restart")
    assert subscriber.payloads(1) == [b"after restart"]


def test_graceful_restart_keeps_sessions_and_queued_messages(
    any_broker: _BrokerProcess, connect: Callable[..., Client]
) -> None:
    subscriber = connect("collector", persistent=True)
    assert subscriber.connected()
    subscriber.subscribe("batches/#")
    subscriber.close()
    time.sleep(SETTLE_S)
    publisher = connect("device-1")
    for n in range(3):
        publisher.publish("batches/device-1", b"%d" % n)
    publisher.close()

    any_broker.restart()

    subscriber = connect("collector", persistent=True)
    assert subscriber.connected()
    if any_broker.survives_restart:
        assert subscriber.payloads(3) == [b"0", b"1", b"2"]
    else:
        with pytest.raises(queue.Empty):
            subscriber.received.get(timeout=0.5)


def test_mqtt5_flag_is_true(any_broker: _BrokerProcess, connect: Callable[..., Client]) -> None:
    client = connect("v5-client", protocol=mqtt.MQTTv5)
    assert client.connected() is any_broker.mqtt5


def test_shared_subscription_flag_is_true(any_broker: _BrokerProcess, connect: Callable[..., Client]) -> None:
    collectors = [connect(f"collector-{n}") for n in range(2)]
    for collector in collectors:
        assert collector.connected()
        collector.subscribe("$share/collectors/batches/#")
    publisher = connect("device-1")
    for n in range(10):
        publisher.publish("batches/device-1", b"%d" % n)

    if any_broker.shared_subscriptions:
        counts = [0, 0]
        deadline = time.monotonic() + TIMEOUT_S
        while sum(counts) < 10 and time.monotonic() < deadline:
            for index, collector in enumerate(collectors):
                while not collector.received.empty():
                    collector.received.get()
                    counts[index] += 1
            time.sleep(0.01)
        assert sum(counts) == 10 and all(counts), f"each message once, spread over both: {counts}"
    else:
        time.sleep(0.5)
        assert all(collector.received.empty() for collector in collectors)


def test_start_broker_prefers_mosquitto_and_honours_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOOTFALL_BROKER", "amqtt")
    forced = start_broker(autosave_interval_s=5)
    try:
        assert isinstance(forced, AmqttBroker) and forced.is_running()
    finally:
        forced.close()

    monkeypatch.delenv("FOOTFALL_BROKER")
    chosen = start_broker()
    try:
        expected = MosquittoBroker if find_mosquitto() is not None else AmqttBroker
        assert isinstance(chosen, expected) and port_accepts(chosen.host, chosen.port)
    finally:
        chosen.close()


def test_broker_fixture_serves_mqtt(broker: Broker) -> None:
    client = Client(broker.port, "fixture-user")
    try:
        assert client.connected()
    finally:
        client.close()
