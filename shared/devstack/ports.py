"""TCP port helpers for throwaway services on the loopback interface."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a port nobody listens on right now.

    The kernel picks it, so parallel test runs rarely collide; callers that
    bind later should still be ready for "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_accepts(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    timeout_s: float,
    what: str,
) -> None:
    """Poll `ready` until true; fail fast if `process` exits meanwhile.

    Raises RuntimeError (process died) or TimeoutError; callers add the log tail.
    """
    deadline = time.monotonic() + timeout_s
    delay_s = 0.01
    while True:
        if ready():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.1)
