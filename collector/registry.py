"""Sites and enrolled devices: the public keys batches are verified against.

:class:`DeviceRegistry` keeps every enrolled key in memory so verifying a
batch costs no query. A batch from a device it does not know (or whose
signature fails, as after a key rotation) makes the service call
:meth:`DeviceRegistry.refresh`, so enrolling a device never needs a restart;
refreshes are rate-limited so a flood of junk cannot turn into a flood of
queries. The module-level functions are the enrollment operations the CLI
uses.
"""

from __future__ import annotations

import logging
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.signing import load_verifier
from shared.topics import check_id

log = logging.getLogger(__name__)


class RegistryError(Exception):
    """An enrollment request that cannot be carried out; the message says why."""


class DeviceRegistry:
    """In-memory map (site_id, device_id) → Ed25519 verifier, refreshed from the database."""

    def __init__(self, min_refresh_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._verifiers: dict[tuple[str, str], Ed25519PublicKey] = {}
        self._min_refresh_interval_s = min_refresh_interval_s
        self._clock = clock
        self._last_refresh_s: float | None = None

    def __len__(self) -> int:
        return len(self._verifiers)

    def verifier(self, site_id: str, device_id: str) -> Ed25519PublicKey | None:
        """The device's verifier, or ``None`` when it is not enrolled (as far as the cache knows)."""
        return self._verifiers.get((site_id, device_id))

    def may_refresh(self) -> bool:
        """True when the rate limit allows another refresh now."""
        last = self._last_refresh_s
        return last is None or self._clock() - last >= self._min_refresh_interval_s

    async def refresh(self, connection: asyncpg.Connection | asyncpg.Pool) -> bool:
        """Reload every key if the rate limit allows; return whether it did."""
        if not self.may_refresh():
            return False
        self._last_refresh_s = self._clock()
        rows = await connection.fetch("SELECT site_id, device_id, public_key FROM footfall.devices")
        self._verifiers = {(r["site_id"], r["device_id"]): load_verifier(bytes(r["public_key"])) for r in rows}
        log.info("registry=refreshed devices=%d", len(self._verifiers))
        return True


@dataclass(frozen=True)
class SiteInfo:
    site_id: str
    name: str | None
    time_zone: str
    created_at: datetime
    devices: int


@dataclass(frozen=True)
class DeviceInfo:
    site_id: str
    device_id: str
    enrolled_at: datetime
    acked_seq: int
    last_seen_at: datetime | None
    agent_version: str | None


def check_time_zone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone, else raise ``RegistryError`` with an example."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise RegistryError(f"unknown time zone {name!r}: use an IANA name such as Europe/Prague or UTC") from None
    return name


async def add_site(connection: asyncpg.Connection, site_id: str, time_zone: str, name: str | None = None) -> None:
    """Create a site, or update its name and time zone when it exists."""
    _check_ids(site_id)
    check_time_zone(time_zone)
    try:
        await connection.execute(
            "INSERT INTO footfall.sites (site_id, name, time_zone) VALUES ($1, $2, $3)"
            " ON CONFLICT (site_id) DO UPDATE SET name = coalesce(EXCLUDED.name, sites.name),"
            " time_zone = EXCLUDED.time_zone",
            site_id,
            name,
            time_zone,
        )
    except asyncpg.InvalidParameterValueError as error:
        # zoneinfo and PostgreSQL may ship different tz databases.
        raise RegistryError(f"PostgreSQL does not know time zone {time_zone!r}: {error}") from None


async def enroll_device(
    connection: asyncpg.Connection, site_id: str, device_id: str, public_key: bytes, replace_key: bool = False
) -> bool:
    """Record a device's public key; return False when it was already enrolled with this very key.

    Enrolling a known device with a different key is refused unless ``replace_key``:
    a silent key swap would let anyone holding the new key speak for the device.
    """
    _check_ids(site_id, device_id)
    load_verifier(public_key)  # raises ValueError unless 32 bytes of a valid key
    async with connection.transaction():
        if not await connection.fetchval("SELECT true FROM footfall.sites WHERE site_id = $1", site_id):
            raise RegistryError(f"site {site_id!r} does not exist; add it first with `footfall-collector site add`")
        current = await connection.fetchval(
            "SELECT public_key FROM footfall.devices WHERE site_id = $1 AND device_id = $2 FOR UPDATE",
            site_id,
            device_id,
        )
        if current is not None and bytes(current) == public_key:
            return False
        if current is not None and not replace_key:
            raise RegistryError(
                f"device {site_id}/{device_id} is enrolled with another key; pass --replace-key to rotate it"
            )
        await connection.execute(
            "INSERT INTO footfall.devices (site_id, device_id, public_key) VALUES ($1, $2, $3)"
            " ON CONFLICT (site_id, device_id) DO UPDATE SET public_key = EXCLUDED.public_key, enrolled_at = now()",
            site_id,
            device_id,
            public_key,
        )
    return True


async def list_sites(connection: asyncpg.Connection) -> list[SiteInfo]:
    rows = await connection.fetch(
        "SELECT s.site_id, s.name, s.time_zone, s.created_at, count(d.device_id) AS devices"
        " FROM footfall.sites s LEFT JOIN footfall.devices d USING (site_id)"
        " GROUP BY s.site_id ORDER BY s.site_id"
    )
    return [SiteInfo(**dict(row)) for row in rows]


async def list_devices(connection: asyncpg.Connection, site_id: str | None = None) -> list[DeviceInfo]:
    rows = await connection.fetch(
        "SELECT site_id, device_id, enrolled_at, acked_seq, last_seen_at, agent_version FROM footfall.devices"
        " WHERE $1::text IS NULL OR site_id = $1 ORDER BY site_id, device_id",
        site_id,
    )
    return [DeviceInfo(**dict(row)) for row in rows]


def _check_ids(site_id: str, device_id: str | None = None) -> None:
    try:
        check_id(site_id, "site id")
        if device_id is not None:
            check_id(device_id, "device id")
    except ValueError as error:
        raise RegistryError(str(error)) from None
