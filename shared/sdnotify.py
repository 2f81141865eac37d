"""systemd's notify protocol (``sd_notify``) without a library: one datagram per message.

A ``Type=notify`` unit is "started" only when the service says ``READY=1``,
so dependants wait for real start-up checks, not for ``fork()``. With
``WatchdogSec=`` systemd kills and restarts a service that stops sending
``WATCHDOG=1``. ``STATUS=`` shows up in ``systemctl status``; ``STOPPING=1``
tells systemd that a slow exit is a drain, not a hang.

Outside systemd (``NOTIFY_SOCKET`` unset) every call is a no-op, so the same
code runs under a terminal, a container or the tests.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends notify messages to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket)."""

    def __init__(self, socket_path: str | None, watchdog_interval_s: float | None = None) -> None:
        self._address: str | bytes | None = None
        if socket_path:
            # An abstract socket name starts with a NUL byte on the wire.
            self._address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
        self.watchdog_interval_s = watchdog_interval_s
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "SystemdNotifier":
        return cls(environ.get("NOTIFY_SOCKET"), watchdog_interval_s(environ))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def stopping(self, status: str = "stopping") -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.replace("\0", "").encode("utf-8"), self._address)
        except OSError as exc:
            # Losing a notification must never take the service down; say it once.
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
                self._failed = True


def watchdog_interval_s(environ: Mapping[str, str] = os.environ) -> float | None:
    """The service's ``WatchdogSec`` in seconds, or ``None`` when no watchdog is asked of this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 1_000_000
