"""Feed systemd's watchdog only while the service is healthy.

Restarting is the cure for a wedged process, not for a missing network: the
health check a service passes in lists only what a restart could fix (a
thread that died, a loop that stopped turning, a write that never returns).
Loops prove they turn with a :class:`Heartbeat`; the :class:`WatchdogFeeder`
thread asks the check every third of ``WatchdogSec`` and sends ``WATCHDOG=1``
only when it comes back empty, so systemd restarts a service that stays
unhealthy for a whole watchdog period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared.sdnotify import SystemdNotifier

log = logging.getLogger(__name__)

#: How often health is reported in ``STATUS=`` when systemd asks for no watchdog.
STATUS_INTERVAL_S = 10.0

HealthCheck = Callable[[], list[str]]
"""Returns the problems a restart could fix, each a short phrase; empty when healthy."""

StatusText = Callable[[], str]


class Heartbeat:
    """When a loop promised to turn next; another thread reads whether it is late.

    A loop calls :meth:`beat` with the longest it may take until its next
    beat — short while it polls, the whole backoff while it deliberately
    sleeps — so a long but planned wait is never mistaken for a hang.
    """

    def __init__(self, first_within_s: float = 60.0) -> None:
        self._due_s = time.monotonic() + first_within_s

    def beat(self, next_within_s: float) -> None:
        self._due_s = time.monotonic() + next_within_s  # one float store: atomic for readers

    def late_by_s(self) -> float:
        """Seconds past the promised beat; 0 while on time."""
        return max(0.0, time.monotonic() - self._due_s)


class WatchdogFeeder:
    """A daemon thread: checks health, feeds the watchdog while healthy, keeps ``STATUS=`` current."""

    def __init__(self, notifier: SystemdNotifier, check: HealthCheck, status: StatusText) -> None:
        self._notifier = notifier
        self._check = check
        self._status = status
        watchdog_s = notifier.watchdog_interval_s
        self.interval_s = watchdog_s / 3 if watchdog_s else STATUS_INTERVAL_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._last_problems: list[str] = []

    def start(self) -> None:
        """Start feeding; does nothing outside systemd."""
        if self._notifier.enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval_s + 1)

    def feed_once(self) -> list[str]:
        """One check: feed when healthy; return the problems found."""
        try:
            problems = self._check()
        except Exception as exc:  # a broken check is itself a problem a restart may cure
            problems = [f"health check failed: {type(exc).__name__}"]
        if problems != self._last_problems:
            if problems:
                log.error("unhealthy (%s); not feeding the systemd watchdog", "; ".join(problems))
            else:
                log.info("healthy again; feeding the systemd watchdog")
            self._last_problems = problems
        if problems:
            self._notifier.status("unhealthy: " + "; ".join(problems))
        else:
            self._notifier.watchdog()
            self._notifier.status(self._status())
        return problems

    def _run(self) -> None:
        while True:
            self.feed_once()
            if self._stop.wait(self.interval_s):
                return
