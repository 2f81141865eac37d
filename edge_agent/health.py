"""Is the running agent healthy enough to feed systemd's watchdog?

Only what a restart could fix counts: the uplink thread died or its loop
stopped turning (a hung socket, or a spool write that never returns, since
the uplink reads the spool every turn); the live source loop stopped
turning; the camera thread died although nothing asked it to stop. A
missing network, an unplugged camera or a vanished Wi-Fi adapter are not
problems here: the agent keeps running, reports them in its status and
recovers by itself, and restarting would only lose buffered events.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from edge_agent.camera.worker import CameraWorker
from edge_agent.uplink import Uplink
from shared.watchdog import Heartbeat

#: The live source loop turns four times a second; this long without a turn means it is stuck.
SOURCE_STALL_S = 60.0


@dataclass
class AgentHealth:
    """The pieces a health check looks at; ``source`` is beaten by the source loop."""

    uplink: Uplink
    source: Heartbeat
    camera: CameraWorker | None
    stopping: threading.Event

    def problems(self) -> list[str]:
        if self.stopping.is_set():
            return []
        found = []
        if not self.uplink.running:
            found.append("uplink thread stopped")
        elif late_s := self.uplink.heartbeat.late_by_s():
            found.append(f"uplink loop stuck for {late_s:.0f} s")
        if late_s := self.source.late_by_s():
            found.append(f"source loop stuck for {late_s:.0f} s")
        if self.camera is not None and not self.camera.running:
            found.append("camera thread stopped")
        return found
