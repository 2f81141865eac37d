"""Is the running collector healthy enough to feed systemd's watchdog?

Only what a restart could fix counts: the event loop stopped turning; paho's
network thread died; the consumer stopped trying to reach a lost broker; or
a commit has been running for minutes although the database answers (a
lock, a wedged connection). A database or broker that is down is not a
problem here: the collector retries with backoff, ``/readyz`` says so, and a
restart would not bring either back.
"""

from __future__ import annotations

from dataclasses import dataclass
import time

from collector.consumer import MqttConsumer
from collector.state import CollectorState, ConnectionState
from shared.watchdog import Heartbeat

#: The event loop beats every second; this long without a beat means something blocks it.
LOOP_STALL_S = 30.0
#: A commit group taking this long while the database answers is stuck.
WRITER_STALL_S = 120.0
#: Beyond the longest reconnect delay, how long one connection attempt (TCP, TLS, CONNACK) may take.
CONNECT_ATTEMPT_S = 30.0


@dataclass
class CollectorHealth:
    state: CollectorState
    consumer: MqttConsumer
    #: Beaten by a task on the event loop.
    loop: Heartbeat
    #: Promises the end of the commit in progress; no promise while idle.
    writer: Heartbeat
    reconnect_max_s: float

    def problems(self) -> list[str]:
        found = []
        if late_s := self.loop.late_by_s():
            found.append(f"event loop blocked for {late_s:.0f} s")
        if not self.consumer.thread_alive:
            found.append("MQTT network thread stopped")
        elif self.state.broker is not ConnectionState.CONNECTED:
            silent_s = time.monotonic() - self.consumer.last_attempt_s
            if silent_s > 1.5 * self.reconnect_max_s + CONNECT_ATTEMPT_S:
                found.append(f"no attempt to reach the MQTT broker for {silent_s:.0f} s")
        if (late_s := self.writer.late_by_s()) and self.state.database is ConnectionState.CONNECTED:
            found.append(f"a commit is stuck for {late_s:.0f} s although the database answers")
        return found
