"""The MQTT uplink: moves spooled batches to the collector until it confirms each one.

A batch lives in the spool until the collector's cumulative ack covers it. The
broker's PUBACK is not enough — a broker keeps queued messages in memory and
can lose them in a crash — so PUBACK only moves a batch along:

    QUEUED ──publish──▶ AWAITING_PUBACK ──PUBACK──▶ AWAITING_COMMIT ──collector ack──▶ deleted
       ▲                                                   │
       └──── connection lost, or no ack within the ack timeout (go back and resend) ◀┘

**If the connection drops now**, every batch not yet acked by the collector
is still in the spool; all in-flight state is forgotten with the connection,
and after reconnecting everything above the collector's ``acked_seq`` is
published again in seq order. Duplicates are harmless: the collector is
idempotent on (site, device, seq).

The connection itself is DISCONNECTED → CONNECTING (TCP up, waiting for
CONNACK and the SUBACK of the ack topic) → CONNECTED (batches flow). One
network thread owns the paho client and drives it with ``client.loop()``; it
also runs the reconnect loop, because paho's own reconnect (``loop_start``)
waits without jitter and a mall full of devices would reconnect in lockstep
after a broker restart. Each connection uses a fresh client, so no message
paho queued for a dead connection is ever replayed behind our back.

Payloads are never logged: only seq numbers and connection events.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_agent.spool import Spool
from shared.protocol import ProtocolError, decode_ack, encode_status
from shared.topics import ack_topic, batch_topic, status_topic
from shared.watchdog import Heartbeat

log = logging.getLogger(__name__)

#: How long one turn of the network loop waits for traffic; bounds the latency of new batches.
POLL_S = 0.1
#: How long ``stop()`` waits for the broker to confirm the final offline status.
STOP_FLUSH_S = 2.0
#: Longest one turn may take (a poll, or a connect with DNS, TCP and TLS) before the loop counts as hung.
TURN_STALL_S = 60.0

StatusProvider = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class UplinkConfig:
    """How the device reaches the broker and paces its uploads."""

    host: str = field(default="localhost", metadata={"help": "the MQTT broker's host name or IP address"})
    port: int = field(default=1883, metadata={"help": "1883 for plain MQTT, usually 8883 with tls: true"})
    keepalive_s: int = field(default=60, metadata={"help": "seconds between MQTT pings on an idle connection"})
    tls: bool = field(default=False, metadata={"help": "true to connect with TLS (then set port, usually 8883)"})
    ca_path: Path | None = field(
        default=None, metadata={"help": "PEM file of the CA that signed the broker's certificate; empty = system CAs"}
    )
    cert_path: Path | None = field(default=None, metadata={"help": "the device's client certificate (PEM)"})
    key_path: Path | None = field(default=None, metadata={"help": "the private key of cert_path (PEM)"})
    max_inflight: int = field(default=20, metadata={"help": "batches awaiting the broker's PUBACK at once (1-1000)"})
    ack_timeout_s: float = field(
        default=30.0, metadata={"help": "seconds to wait for the collector's ack before sending batches again"}
    )
    ack_timeout_max_s: float = field(
        default=600.0, metadata={"help": "the ack timeout doubles while the collector stays silent, up to this"}
    )
    reconnect_min_s: float = field(default=1.0, metadata={"help": "base of the jittered reconnect backoff"})
    reconnect_max_s: float = field(default=60.0, metadata={"help": "longest wait between reconnect attempts"})
    status_interval_s: float = field(default=60.0, metadata={"help": "seconds between retained status messages"})

    def __post_init__(self) -> None:
        if (self.cert_path is None) != (self.key_path is None):
            raise ValueError("uplink cert_path and key_path must be set together")
        if not self.tls and (self.ca_path or self.cert_path):
            raise ValueError("uplink ca_path/cert_path/key_path are set but tls is false; set tls: true")
        if not 1 <= self.max_inflight <= 1000:
            raise ValueError("uplink max_inflight must be between 1 and 1000")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("uplink reconnect_min_s must be > 0 and ≤ reconnect_max_s")
        if not 0 < self.ack_timeout_s <= self.ack_timeout_max_s:
            raise ValueError("uplink ack_timeout_s must be > 0 and ≤ ack_timeout_max_s")
        if self.keepalive_s < 5 or self.status_interval_s <= 0:
            raise ValueError("uplink keepalive_s must be ≥ 5 and status_interval_s > 0")


class ConnectionState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


class BatchState(enum.Enum):
    QUEUED = "queued"
    AWAITING_PUBACK = "awaiting_puback"
    AWAITING_COMMIT = "awaiting_commit"


@dataclass(frozen=True)
class UplinkStats:
    """A snapshot for the status message and ``doctor``; counters run since start."""

    connection: str = ConnectionState.DISCONNECTED.value
    acked_seq: int = 0
    sent_through_seq: int = 0
    #: In the spool, not sent on this connection yet (includes everything while disconnected).
    queued: int = 0
    awaiting_puback: int = 0
    awaiting_commit: int = 0
    published: int = 0
    resends: int = 0
    connects: int = 0
    connect_failures: int = 0
    connection_losses: int = 0
    ack_timeout_s: float = 0.0


def backoff_delay_s(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max_s, min_s·2^attempt)].

    Full jitter spreads devices that lost the broker at the same instant
    across the whole window instead of bringing them back in waves.
    """
    return rng.uniform(0.0, min(max_s, min_s * 2.0 ** min(attempt, 32)))


class Uplink:
    """Publishes the spool's batches over MQTT and deletes them once the collector acks.

    The retained ``online`` status carries ``spool`` and ``uplink`` statistics;
    ``status_provider`` adds the agent's own fields (``agent_version``, source
    counters). It is called from the uplink's thread and must not block.
    """

    def __init__(
        self,
        config: UplinkConfig,
        spool: Spool,
        site_id: str,
        device_id: str,
        status_provider: StatusProvider = dict,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._spool = spool
        self._site_id, self._device_id = site_id, device_id
        self._batch_topic = batch_topic(site_id, device_id)
        self._status_topic = status_topic(site_id, device_id)
        self._ack_topic = ack_topic(site_id, device_id)
        self._status_provider = status_provider
        self._rng = rng or random.Random()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        #: Beaten every turn; read by the agent's health check (a hung spool or socket stops it).
        self.heartbeat = Heartbeat(TURN_STALL_S)

        # Everything below belongs to the uplink thread.
        self._client: mqtt.Client | None = None
        self._state = ConnectionState.DISCONNECTED
        self._failed_attempts = 0
        self._must_wait = False
        self._last_error = ""
        #: Set by a callback that wants the connection dropped once paho returns.
        self._drop_reason = ""
        self._ack_mid: int | None = None
        self._status_mid: int | None = None
        self._next_status_s = 0.0
        self._acked_seq = 0
        #: Batches sent on this connection and not yet acked, by seq.
        self._batches: dict[int, BatchState] = {}
        self._seq_by_mid: dict[int, int] = {}
        #: Highest seq published on this connection; the next publish starts above it.
        self._sent_through_seq = 0
        self._durable_through_seq = 0
        self._commit_deadline_s: float | None = None
        self._ack_timeout_s = config.ack_timeout_s
        self._warned_ack_above = False
        self._counters = {"published": 0, "resends": 0, "connects": 0, "connect_failures": 0, "connection_losses": 0}
        self._snapshot = UplinkStats(ack_timeout_s=config.ack_timeout_s)

    # -- public API (any thread) ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Publish the ``offline`` status if connected, disconnect cleanly, join the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> UplinkStats:
        snapshot = self._snapshot
        in_flight = snapshot.awaiting_puback + snapshot.awaiting_commit
        return replace(snapshot, queued=max(0, self._spool.stats().batches - in_flight))

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the collector has acked everything appended so far; False on timeout.

        Also waits for :meth:`stats` to show it, so callers can read the final counters.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            snapshot = self._snapshot
            if snapshot.awaiting_puback + snapshot.awaiting_commit == 0 and not self._spool.stats().batches:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    # -- the network thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._turn()
            except Exception:  # the uplink must outlive any bug in one turn
                log.exception("uplink error; reconnecting")
                self._failed_attempts += 1
                self._connection_lost("internal error")
        self._shutdown()

    def _turn(self) -> None:
        self.heartbeat.beat(TURN_STALL_S)
        client = self._client
        if client is None:
            self._connect()
            return
        rc = client.loop(timeout=POLL_S)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._drop_reason:
            self._connection_lost(self._drop_reason or mqtt.error_string(rc))
            return
        if self._state is ConnectionState.CONNECTED:
            self._check_ack_timeout()
            self._publish_status_when_due()
            self._publish_batches()
        self._take_snapshot()

    def _connect(self) -> None:
        if self._must_wait:
            delay_s = backoff_delay_s(
                self._failed_attempts, self.config.reconnect_min_s, self.config.reconnect_max_s, self._rng
            )
            self.heartbeat.beat(delay_s + TURN_STALL_S)
            if self._stopping.wait(delay_s):
                return
        self._must_wait = True
        self._set_state(ConnectionState.CONNECTING)
        try:
            client = self._new_client()
            client.connect(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        except OSError as exc:  # refused, unreachable, DNS, TLS files or handshake: all retried
            self._connect_failed(f"{type(exc).__name__}: {exc}")
            return
        self._client = client

    def _new_client(self) -> mqtt.Client:
        config = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"footfall-{self._site_id}-{self._device_id}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if config.tls:
            client.tls_set(
                ca_certs=str(config.ca_path) if config.ca_path else None,
                certfile=str(config.cert_path) if config.cert_path else None,
                keyfile=str(config.key_path) if config.key_path else None,
            )
        will = self._status_payload("offline", "connection lost", timestamped=False)
        client.will_set(self._status_topic, will, qos=1, retain=True)
        # Our own window decides what is in flight; paho must never hold messages back.
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # -- connection state --------------------------------------------------------------

    def _set_state(self, state: ConnectionState) -> None:
        self._state = state
        self._take_snapshot()

    def _connect_failed(self, reason: str) -> None:
        self._counters["connect_failures"] += 1
        self._failed_attempts += 1
        self._set_state(ConnectionState.DISCONNECTED)
        if reason != self._last_error:  # one line per kind of failure, not one per attempt
            log.warning(
                "cannot reach MQTT broker %s:%d (%s); batches wait in the spool, retrying with backoff",
                self.config.host, self.config.port, reason,
            )
            self._last_error = reason

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if client is not self._client:
            return
        if reason_code.is_failure:
            self._drop_reason = f"broker refused the connection: {reason_code}"
            return
        self._publish_status()
        _rc, self._ack_mid = client.subscribe(self._ack_topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, _userdata: Any, mid: int, reason_codes: list, _props: Any) -> None:
        if client is not self._client or mid != self._ack_mid:
            return
        if reason_codes[0].is_failure:
            self._drop_reason = f"broker refused the subscription to {self._ack_topic}; check its ACL"
            return
        log.info("connected to MQTT broker %s:%d; resending from seq %d", self.config.host, self.config.port,
                 self._acked_seq + 1)
        self._failed_attempts = 0
        self._last_error = ""
        self._counters["connects"] += 1
        self._set_state(ConnectionState.CONNECTED)

    def _connection_lost(self, reason: str) -> None:
        """Forget the connection; every unacked batch is still in the spool and is resent later."""
        client, self._client = self._client, None
        self._drop_reason = ""
        if client is None:
            return
        # Close without DISCONNECT, so the broker publishes our last will (offline).
        sock = client.socket()
        if sock is not None:
            sock.close()
        self._forget_in_flight()
        if self._state is ConnectionState.CONNECTED:
            self._counters["connection_losses"] += 1
            log.warning("lost the MQTT connection (%s); unacked batches stay in the spool", reason)
            self._set_state(ConnectionState.DISCONNECTED)
        else:
            self._connect_failed(reason)

    def _forget_in_flight(self) -> None:
        """Go back to the collector's ack: everything above it is QUEUED again."""
        self._batches.clear()
        self._seq_by_mid.clear()
        self._sent_through_seq = self._acked_seq
        self._commit_deadline_s = None

    # -- batches -----------------------------------------------------------------------

    def _publish_batches(self) -> None:
        """Fill the PUBACK window with the next batches, in seq order."""
        assert self._client is not None
        in_window = sum(1 for state in self._batches.values() if state is BatchState.AWAITING_PUBACK)
        free = self.config.max_inflight - in_window
        if free <= 0:
            return
        batches = self._spool.pending(after_seq=self._sent_through_seq, limit=free)
        if not batches:
            return
        if batches[-1][0] > self._durable_through_seq:
            # A seq the collector may see must survive a power cut, or it could be reused.
            self._spool.sync()
            self._durable_through_seq = batches[-1][0]
        for seq, message in batches:
            info = self._client.publish(self._batch_topic, message, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # the connection is going down; the loop notices next turn
            self._seq_by_mid[info.mid] = seq
            self._batches[seq] = BatchState.AWAITING_PUBACK
            self._sent_through_seq = seq
            self._counters["published"] += 1

    def _on_publish(self, client: mqtt.Client, _userdata: Any, mid: int, _reason_code: Any, _props: Any) -> None:
        if client is not self._client:
            return
        if mid == self._status_mid:
            self._status_mid = None
            return
        seq = self._seq_by_mid.pop(mid, None)
        if seq is None or seq not in self._batches:
            return  # acked by the collector before the broker's PUBACK arrived, or from before a resend
        self._batches[seq] = BatchState.AWAITING_COMMIT
        if self._commit_deadline_s is None:
            self._commit_deadline_s = time.monotonic() + self._ack_timeout_s

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is not self._client or message.topic != self._ack_topic:
            return
        try:
            acked_seq = decode_ack(message.payload)
        except ProtocolError as exc:
            log.warning("ignored a malformed ack on %s: %s", self._ack_topic, exc.reason)
            return
        self._handle_ack(acked_seq)

    def _handle_ack(self, acked_seq: int) -> None:
        highest_seq = self._spool.stats().next_seq - 1
        if acked_seq > highest_seq:
            if not self._warned_ack_above:
                log.warning(
                    "ignored the collector's ack of seq %d: this device has only assigned up to %d "
                    "(was its state directory wiped, or does another device use the id %s/%s?)",
                    acked_seq, highest_seq, self._site_id, self._device_id,
                )
                self._warned_ack_above = True
            return
        if acked_seq <= self._acked_seq:
            return
        self._spool.ack(acked_seq)
        self._acked_seq = acked_seq
        for seq in [seq for seq in self._batches if seq <= acked_seq]:
            del self._batches[seq]
        self._sent_through_seq = max(self._sent_through_seq, acked_seq)
        # Progress: the collector is alive, so the patience resets.
        self._ack_timeout_s = self.config.ack_timeout_s
        waiting = any(state is BatchState.AWAITING_COMMIT for state in self._batches.values())
        self._commit_deadline_s = time.monotonic() + self._ack_timeout_s if waiting else None

    def _check_ack_timeout(self) -> None:
        if self._commit_deadline_s is None or time.monotonic() < self._commit_deadline_s:
            return
        log.info(
            "no ack from the collector for %.0f s; resending from seq %d", self._ack_timeout_s, self._acked_seq + 1
        )
        self._counters["resends"] += 1
        self._ack_timeout_s = min(self._ack_timeout_s * 2, self.config.ack_timeout_max_s)
        self._forget_in_flight()

    # -- status ------------------------------------------------------------------------

    def _status_payload(self, state: str, reason: str | None = None, timestamped: bool = True) -> bytes:
        """The retained status; the will is not timestamped (the broker sends it later)."""
        status: dict[str, Any] = {}
        if state == "online":
            try:
                status.update(self._status_provider())
            except Exception:
                log.exception("status provider failed; sending the status without its fields")
            status["spool"] = self._spool.stats()._asdict()
            status["uplink"] = asdict(self.stats())
        status.update(state=state, site=self._site_id, device=self._device_id)
        if timestamped:
            status["at_s"] = round(time.time(), 3)
        if reason:
            status["reason"] = reason
        return encode_status(status)

    def _publish_status(self, state: str = "online", reason: str | None = None) -> None:
        assert self._client is not None
        info = self._client.publish(self._status_topic, self._status_payload(state, reason), qos=1, retain=True)
        self._status_mid = info.mid
        self._next_status_s = time.monotonic() + self.config.status_interval_s

    def _publish_status_when_due(self) -> None:
        if time.monotonic() >= self._next_status_s:
            self._publish_status()

    def _take_snapshot(self) -> None:
        states = list(self._batches.values())
        self._snapshot = UplinkStats(
            connection=self._state.value,
            acked_seq=self._acked_seq,
            sent_through_seq=self._sent_through_seq,
            awaiting_puback=states.count(BatchState.AWAITING_PUBACK),
            awaiting_commit=states.count(BatchState.AWAITING_COMMIT),
            ack_timeout_s=self._ack_timeout_s,
            **self._counters,
        )

    # -- shutdown ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Say ``offline`` ourselves (a clean DISCONNECT suppresses the will) and disconnect."""
        client = self._client
        if client is None:
            return
        if self._state is not ConnectionState.DISCONNECTED:  # "online" may already be out
            self._publish_status("offline", "stopped")
            deadline = time.monotonic() + STOP_FLUSH_S
            while self._status_mid is not None and time.monotonic() < deadline:
                if client.loop(timeout=POLL_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self._client = None
        client.disconnect()
        client.loop(timeout=POLL_S)  # writes the DISCONNECT packet
        self._set_state(ConnectionState.DISCONNECTED)
        log.info("uplink stopped; %d batches remain in the spool", self._spool.stats().batches)
