"""The lifecycle every throwaway service shares: a free port, start with retry, stop, kill, restart, close.

Chaos tests kill and restart the broker and the database on the same port,
so clients can reconnect to the address they had; the demo and the tests
use them as context managers. What differs per service is how it is
launched (``_launch``), what must exist before (``_prepare``) and how it
asks to be stopped (``stop``).
"""

from __future__ import annotations

import shutil
import signal
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from shared.devstack.ports import LOOPBACK, free_port, wait_until
from shared.devstack.processes import ServiceProcess, log_tail


class ManagedService:
    """One service process on a loopback port, owned by this object.

    ``_launch`` starts ``self._process`` and waits with ``_wait_until_serving``,
    which raises ``start_error`` (with the log's tail) when it does not serve.
    """

    #: Used in messages, e.g. "mosquitto" or "PostgreSQL".
    name: ClassVar[str]
    #: What ``_launch`` raises; a port taken in between is retried on another port.
    start_error: ClassVar[type[RuntimeError]]

    def __init__(self, port: int | None, startup_timeout_s: float) -> None:
        self.startup_timeout_s = startup_timeout_s
        self._port = port
        self._port_is_ours = port is None
        self._process: ServiceProcess | None = None
        self._remove_temporary_dir: weakref.finalize | None = None

    def _own_temporary_dir(self, path: Path) -> None:
        """Remove ``path`` on ``close()`` (or when this object is collected)."""
        self._remove_temporary_dir = weakref.finalize(self, shutil.rmtree, path, ignore_errors=True)

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} has not been started yet")
        return self._port

    def start(self) -> Self:
        """Start and wait until it serves; a free port taken meanwhile is retried on another."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running on port {self.port}")
        self.kill()  # reap a process that died on its own
        self._prepare()
        attempts = 3 if self._port_is_ours else 1
        for attempt in range(1, attempts + 1):
            if self._port is None:
                self._port = free_port()
            try:
                self._launch()
                break
            except self.start_error as error:
                # Someone took the free port between our probe and the bind.
                if attempt == attempts or "address already in use" not in str(error).lower():
                    raise
                self._port = None
        # Restarts keep the port: clients reconnect to the same address.
        self._port_is_ours = False
        return self

    def stop(self) -> None:
        """Shut down gracefully (each service says how)."""
        raise NotImplementedError

    def _stop_with(self, sig: signal.Signals, timeout_s: float) -> None:
        if self._process is not None:
            self._process.stop(sig, timeout_s)
            self._process = None

    def kill(self) -> None:
        """SIGKILL the process and everything it forked at once, like a power cut."""
        if self._process is not None:
            self._process.kill()
            self._process = None

    def restart(self) -> None:
        """Stop if running, then start on the same port and state."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running()

    def close(self) -> None:
        """Stop, and remove the temporary directory if we made it."""
        try:
            self.stop()
        finally:
            self.kill()
            if self._remove_temporary_dir is not None:
                self._remove_temporary_dir()

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def _wait_until_serving(self, serving: Callable[[], bool]) -> None:
        """Wait for the launched process to serve; kill it and raise ``start_error`` with its log if it does not."""
        assert self._process is not None
        try:
            wait_until(serving, self._process.popen, self.startup_timeout_s, self.name)
        except (RuntimeError, TimeoutError) as error:
            self.kill()
            raise self.start_error(f"{error}; {self.log_path} ends with:\n{log_tail(self.log_path)}") from None

    def _prepare(self) -> None:
        """What must exist before the first launch (e.g. initdb); nothing by default."""

    def _launch(self) -> None:
        raise NotImplementedError
