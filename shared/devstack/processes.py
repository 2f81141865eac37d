"""Child processes for throwaway services: log file, whole-tree kill, reaped at exit.

`kill()` takes down a service and every process it forked at the same
instant, the way a power cut would. A process-group kill is not enough:
PostgreSQL backends call setsid(), so they would outlive their postmaster
and talk to clients on their way out. Nothing outlives the test run either:
whatever still runs when the interpreter exits is SIGKILLed. Linux only
(/proc); elsewhere only the service's own process is killed.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_running: dict[int, subprocess.Popen[bytes]] = {}


def _kill_all_at_exit() -> None:
    for popen in list(_running.values()):
        # A reaped process's pid may belong to someone else by now.
        if popen.poll() is None:
            _kill_tree(popen.pid)


atexit.register(_kill_all_at_exit)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # After the parenthesised command name: state ppid ...
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _process_table() -> Iterator[tuple[int, str, int]]:
    """(pid, state, parent pid) of every process."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            yield int(entry.name), *stat


def _kill_tree(root: int) -> list[int]:
    """SIGKILL `root` and all its descendants at once; return the descendants.

    The root is stopped first so that it cannot fork while we list its children.
    """
    try:
        os.kill(root, signal.SIGSTOP)
    except ProcessLookupError:
        return []
    deadline = time.monotonic() + 1.0
    while (stat := _stat(root)) is not None and stat[0] not in ("T", "Z") and time.monotonic() < deadline:
        time.sleep(0.001)
    children: dict[int, list[int]] = {}
    for pid, _, parent in _process_table():
        children.setdefault(parent, []).append(pid)
    descendants: list[int] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        descendants.append(pid)
        pending += children.get(pid, [])
    for pid in [root, *descendants]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return descendants


def _any_alive(pids: Sequence[int]) -> bool:
    """True while one of `pids` runs. Zombies do not count: orphans may stay
    unreaped (a container's PID 1 may not reap) but hold no ports or memory."""
    wanted = set(pids)
    return any(pid in wanted and state not in ("Z", "X") for pid, state, _ in _process_table())


class ServiceProcess:
    """One running service process; its output goes to `log_path` (appended)."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        user: str | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log_file:
            self._popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # a Ctrl-C meant for pytest must not stop it
                **run_as(user),
            )
        _running[self._popen.pid] = self._popen
        log.debug("started %s (pid %d), log %s", argv[0], self._popen.pid, log_path)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        return self._popen

    def is_running(self) -> bool:
        return self._popen.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        """Ask the process to shut down with `sig`; kill its tree after `timeout_s`."""
        if self.is_running():
            try:
                self._popen.send_signal(sig)
                self._popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("pid %d ignored %s for %.0f s; killing it", self.pid, sig.name, timeout_s)
        self.kill()

    def kill(self, timeout_s: float = 10.0) -> None:
        """SIGKILL the process and its descendants; return once none is alive."""
        descendants = _kill_tree(self.pid) if self.is_running() else []
        self._popen.wait()
        deadline = time.monotonic() + timeout_s
        while _any_alive(descendants) and time.monotonic() < deadline:
            time.sleep(0.005)
        _running.pop(self.pid, None)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 64 * 1024))
            text = file.read().decode("utf-8", "replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def run_as(user: str | None) -> dict[str, Any]:
    """subprocess keyword arguments that drop to `user` and its primary group only."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
