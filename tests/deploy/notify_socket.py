"""A stand-in for systemd's end of ``$NOTIFY_SOCKET``: a datagram socket that collects messages."""

from __future__ import annotations

import socket
import time
from pathlib import Path


class NotifySocket:
    """Binds a Unix datagram socket at ``path``; :meth:`wait_for` reads until a field appears."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[dict[str, str]] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))

    def environment(self, watchdog_s: float | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_s is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog_s * 1_000_000))
        return env

    def drain(self, timeout_s: float = 0.0) -> list[dict[str, str]]:
        """Messages that arrive within ``timeout_s`` (at least the ones already queued)."""
        received = []
        deadline = time.monotonic() + timeout_s
        while True:
            self._socket.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self._socket.recv(4096)
            except (TimeoutError, BlockingIOError):
                break
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            received.append(fields)
        self.messages += received
        return received

    def wait_for(
        self, key: str, value: str | None = None, *, contains: str = "", timeout_s: float = 20.0
    ) -> dict[str, str]:
        """The first new message whose ``key`` equals ``value`` (or contains ``contains``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.drain(0.1):
                if key in message and (value is None or message[key] == value) and contains in message[key]:
                    return message
        raise TimeoutError(f"no {key}={value or '*'} within {timeout_s} s; got {self.messages[-5:]}")

    def close(self) -> None:
        self._socket.close()
