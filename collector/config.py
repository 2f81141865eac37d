"""Typed collector configuration with the defaults beside the fields.

Loaded from YAML by :func:`load_collector_config`; every section and key is
optional, so an empty file (or no file) means "all defaults". The database
DSN may come from the ``FOOTFALL_DATABASE_DSN`` environment variable instead,
so a systemd credential or container secret never has to sit in the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.config import ConfigError, load_config
from shared.protocol import MAX_MESSAGE_BYTES
from shared.topics import is_valid_id

DSN_ENVIRONMENT_VARIABLE = "FOOTFALL_DATABASE_DSN"
#: Names a file holding the DSN, e.g. a systemd credential (``%d/database-dsn``).
DSN_FILE_ENVIRONMENT_VARIABLE = "FOOTFALL_DATABASE_DSN_FILE"


def _positive(value: float, key: str) -> None:
    if value <= 0:
        raise ValueError(f"{key} must be greater than 0, got {value}")


@dataclass(frozen=True)
class DatabaseConfig:
    dsn: str = field(
        default="postgresql://footfall@localhost:5432/footfall",
        metadata={"help": f"a libpq URL such as postgresql://user@host:5432/db (or set {DSN_ENVIRONMENT_VARIABLE})"},
    )
    #: Connections kept open; the commit path uses one at a time, the rest serve health checks and refreshes.
    pool_size: int = 4

    def __post_init__(self) -> None:
        _positive(self.pool_size, "pool_size")
        if not self.dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("dsn must start with postgresql://")


@dataclass(frozen=True)
class MqttConfig:
    host: str = "localhost"
    port: int = 1883
    #: Must be stable across restarts: the broker keeps the session (and queued messages) under this ID.
    client_id: str = "footfall-collector"
    #: MQTT version spoken: 5, or "3.1.1" for a broker without MQTT 5 (the amqtt fallback of the demo).
    #: Under 3.1.1 the session never expires (clean_session=false) and the broker's own in-flight
    #: limit replaces receive_maximum; session_expiry_s and receive_maximum are MQTT 5 only.
    version: Literal[5, "3.1.1"] = 5
    #: MQTT 5 shared subscription group so several collectors split the batches; None = plain subscription.
    shared_group: str | None = None
    #: Most unacknowledged messages the broker may have in flight to us (MQTT 5 Receive Maximum): flow control.
    receive_maximum: int = 1000
    keepalive_s: int = 30
    #: How long the broker keeps our session and queues messages while the collector is away.
    session_expiry_s: int = 7 * 24 * 3600
    #: Reconnect backoff: doubles from min to max, each delay randomised ±50 % so collectors do not stampede.
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    #: TLS to the broker (then port is usually 8883); with a client certificate the broker knows us by its CN.
    tls: bool = False
    ca_path: Path | None = field(
        default=None, metadata={"help": "PEM file of the CA that signed the broker's certificate; empty = system CAs"}
    )
    cert_path: Path | None = field(default=None, metadata={"help": "the collector's client certificate (PEM)"})
    key_path: Path | None = field(default=None, metadata={"help": "the private key of cert_path (PEM)"})

    def __post_init__(self) -> None:
        if (self.cert_path is None) != (self.key_path is None):
            raise ValueError("mqtt.cert_path and mqtt.key_path must be set together")
        if not self.tls and (self.ca_path or self.cert_path):
            raise ValueError("mqtt.ca_path/cert_path/key_path are set but mqtt.tls is false; set tls: true")
        if not 0 < self.port < 65536:
            raise ValueError(f"mqtt.port must be 1-65535, got {self.port}")
        if not 1 <= self.receive_maximum <= 65535:
            raise ValueError(f"mqtt.receive_maximum must be 1-65535, got {self.receive_maximum}")
        if not self.client_id:
            raise ValueError("mqtt.client_id must not be empty")
        if self.shared_group is not None and not is_valid_id(self.shared_group):
            raise ValueError("mqtt.shared_group must be 1-64 characters from A-Z a-z 0-9 _ -")
        if self.shared_group is not None and self.version != 5:
            raise ValueError("mqtt.shared_group needs MQTT 5 shared subscriptions; set mqtt.version: 5")
        for key in ("keepalive_s", "session_expiry_s", "reconnect_min_s", "reconnect_max_s"):
            _positive(getattr(self, key), f"mqtt.{key}")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("mqtt.reconnect_max_s must not be below mqtt.reconnect_min_s")


@dataclass(frozen=True)
class IngestConfig:
    #: A commit group closes at this many messages ...
    flush_max_messages: int = 500
    #: ... or this long after its first message, whichever comes first.
    flush_interval_ms: int = 50
    #: Statuses arriving this soon after a (re)connect may have waited in the session queue,
    #: so they do not date the device's clock (``devices.clock_skew_s``).
    status_settle_s: float = 5.0
    #: Processes that check every value of the incoming batches beside the commit path
    #: (collector/checkers.py); 0 = the service thread checks them itself.
    check_workers: int = 1

    def __post_init__(self) -> None:
        _positive(self.flush_max_messages, "ingest.flush_max_messages")
        if self.check_workers < 0:
            raise ValueError("ingest.check_workers must not be negative (0 = check in the service thread)")
        if self.flush_interval_ms < 0:
            raise ValueError("ingest.flush_interval_ms must not be negative")
        if self.status_settle_s < 0:
            raise ValueError("ingest.status_settle_s must not be negative")


@dataclass(frozen=True)
class LimitsConfig:
    """Per-device limits; see collector/ratelimit.py for why an over-limit batch is rejected, not held."""

    #: Sustained events (sightings, crossings, passer-by counts) per second one device may send; 0 = no limit.
    device_events_per_s: float = 20_000.0
    #: Events a device may send at once above the sustained rate (e.g. uploading its spool after an outage).
    device_burst_events: int = 200_000
    #: Largest message accepted, in bytes; at most the protocol's 1 MiB.
    max_message_bytes: int = MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if self.device_events_per_s < 0:
            raise ValueError("limits.device_events_per_s must not be negative (0 = no limit)")
        _positive(self.device_burst_events, "limits.device_burst_events")
        if not 1 <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(f"limits.max_message_bytes must be 1-{MAX_MESSAGE_BYTES}")


@dataclass(frozen=True)
class AnalyticsConfig:
    """The analytics task (collector/analytics/task.py); per-site thresholds live in footfall.sites."""

    #: Run analytics rounds in this collector; ingest-only collectors of a fleet may switch it off.
    enabled: bool = True
    #: How often dirty buckets are looked for, seconds: how soon new rows show in footfall.
    interval_s: float = 1.0
    #: At most this share of wall time goes to analytics rounds: after a round of T seconds the
    #: next waits at least T * (1 - share) / share. Quiet rounds take milliseconds, so new rows
    #: still show within ``interval_s``; under an ingest burst the rounds grow and space out,
    #: queued buckets coalesce, and ingest keeps the CPU.
    max_busy_share: float = 0.25
    #: ... but never longer than this, seconds: after a catch-up round of minutes, the
    #: tables are at most this far behind when the next round starts.
    max_pause_s: float = 60.0
    #: A device further behind than this no longer holds its site's visits open, seconds.
    max_lateness_s: float = 3_600.0

    def __post_init__(self) -> None:
        _positive(self.interval_s, "analytics.interval_s")
        if not 0 < self.max_busy_share <= 1:
            raise ValueError("analytics.max_busy_share must be in (0, 1], e.g. 0.25 for a quarter of the time")
        if self.max_pause_s < self.interval_s:
            raise ValueError("analytics.max_pause_s must be at least analytics.interval_s")
        if self.max_lateness_s < 0:
            raise ValueError("analytics.max_lateness_s must not be negative")


@dataclass(frozen=True)
class RetentionConfig:
    """Days each table keeps, enforced by dropping whole partitions; null keeps forever."""

    #: Raw pseudonymous sightings (and the MAC/hour identity rows derived from them): short.
    wifi_sightings_days: int | None = 14
    passerby_counts_days: int | None = 14
    door_crossings_days: int | None = 400
    visits_days: int | None = 400
    trajectory_days: int | None = 400
    #: The aggregates: long.
    footfall_days: int | None = 1_830
    #: How often expired partitions are looked for, seconds.
    interval_s: float = 3_600.0

    def __post_init__(self) -> None:
        for key, value in dataclasses.asdict(self).items():
            if key.endswith("_days") and value is not None and value < 1:
                raise ValueError(f"retention.{key} must be at least 1 day, or null to keep forever")
        _positive(self.interval_s, "retention.interval_s")

    def days_of(self, table: str) -> int | None:
        return getattr(self, f"{table}_days")


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    #: 0 picks a free port (tests); the bound port is on CollectorService.http_port.
    port: int = 8080

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"http.port must be 0-65535, got {self.port}")


@dataclass(frozen=True)
class WebConfig:
    """The status and footfall page (collector/web/): off until a credential is configured.

    The secrets sit in files (root-only, or systemd credentials) so the config file
    can be shared; collector/web/auth.py reads them when the service starts.
    """

    #: A file holding the access token: ``Authorization: Bearer TOKEN``, or TOKEN as a basic-auth password.
    token_file: Path | None = field(
        default=None, metadata={"help": "a file with one line of at least 16 characters, e.g. `openssl rand -hex 32`"}
    )
    #: Basic-auth user name; its password is the content of ``password_file``.
    user: str | None = None
    password_file: Path | None = field(default=None, metadata={"help": "a file holding the basic-auth password"})
    #: How often the open page fetches fresh figures, seconds.
    refresh_s: float = 30.0
    #: A device not heard from for this long is shown offline (agents send a status every 60 s).
    offline_after_s: float = 180.0

    def __post_init__(self) -> None:
        if (self.user is None) != (self.password_file is None):
            raise ValueError("web.user and web.password_file must be set together (basic auth needs both)")
        _positive(self.refresh_s, "web.refresh_s")
        _positive(self.offline_after_s, "web.offline_after_s")

    @property
    def enabled(self) -> bool:
        return self.token_file is not None or self.user is not None


@dataclass(frozen=True)
class CollectorConfig:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    web: WebConfig = field(default_factory=WebConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)


def load_collector_config(
    path: Path | str | None,
    environ: Mapping[str, str] = os.environ,
) -> CollectorConfig:
    """Read ``path`` (or take the defaults when ``None``) and apply the environment override."""
    config = load_config(path, CollectorConfig) if path is not None else CollectorConfig()
    dsn_file = environ.get(DSN_FILE_ENVIRONMENT_VARIABLE)
    if dsn_file:
        config = with_dsn(config, _read_dsn_file(Path(dsn_file)), source=dsn_file)
    dsn = environ.get(DSN_ENVIRONMENT_VARIABLE)
    if dsn:
        config = with_dsn(config, dsn, source=DSN_ENVIRONMENT_VARIABLE)
    return config


def _read_dsn_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            str(path), "", f"cannot read the database DSN ({exc.strerror})",
            f"put the DSN in this file or unset {DSN_FILE_ENVIRONMENT_VARIABLE}",
        ) from None


def with_dsn(config: CollectorConfig, dsn: str, source: str = "--dsn") -> CollectorConfig:
    """A copy of ``config`` pointing at another database (``source`` names where the DSN came from)."""
    try:
        database = dataclasses.replace(config.database, dsn=dsn)
    except ValueError as exc:
        raise ConfigError(source, "database.dsn", str(exc)) from None
    return dataclasses.replace(config, database=database)


__all__ = [
    "AnalyticsConfig",
    "CollectorConfig",
    "ConfigError",
    "DatabaseConfig",
    "HttpConfig",
    "IngestConfig",
    "LimitsConfig",
    "MqttConfig",
    "RetentionConfig",
    "WebConfig",
    "load_collector_config",
    "with_dsn",
]
