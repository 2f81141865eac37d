"""Keyed pseudonyms: the one place where a raw MAC address is turned into something that may leave.

Pseudonym = the first 64 bits of HMAC-SHA256(pseudonym key of the epoch, MAC),
as a signed integer (PostgreSQL ``bigint``). A plain hash would not do: the
MAC space is small enough to brute-force every hash in minutes. The
pseudonym key and the fingerprint key are derived from the epoch key with
distinct labels so one never reveals the other.

Everything keyed by a raw MAC (the cache, the opt-out set) stays inside this
object, in memory, and is dropped when the epoch changes.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

from edge_agent.wifi.fingerprint import ie_signature
from edge_agent.wifi.ratchet import KeyRatchet, epoch_of

PSEUDONYM_LABEL = b"footfall/v1/pseudonym"
FINGERPRINT_LABEL = b"footfall/v1/fingerprint"
#: Bound on cached MACs per epoch; a flood of random MACs must not grow memory without limit.
MAX_CACHED_MACS = 200_000


class Pseudonym(NamedTuple):
    epoch: int
    pseudonym: int


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (or with ``-``) → 6 bytes; ``ValueError`` names the expected form."""
    cleaned = text.strip().replace("-", ":").lower()
    parts = cleaned.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError("expected a MAC address like aa:bb:cc:dd:ee:ff")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError("expected a MAC address like aa:bb:cc:dd:ee:ff") from None


class Pseudonymiser:
    """MAC → pseudonym and IE layout → fingerprint id, under the current epoch key."""

    def __init__(self, ratchet: KeyRatchet, opt_out_macs: frozenset[bytes] = frozenset()) -> None:
        self._ratchet = ratchet
        self._opt_out = opt_out_macs
        self._epoch = -1
        self._pseudonym_key = b""
        self._fingerprint_key = b""
        self._mac_cache: dict[bytes, int] = {}
        self._fingerprint_cache: dict[bytes, int] = {}
        self.opted_out_frames = 0

    @property
    def period_s(self) -> int:
        return self._ratchet.period_s

    def epoch_for(self, timestamp_s: float) -> int:
        return epoch_of(timestamp_s, self._ratchet.period_s)

    def use_epoch(self, epoch: int) -> None:
        """Switch keys; raises ``StaleEpochError`` for an epoch already ratcheted away."""
        if epoch == self._epoch:
            return
        epoch_key = self._ratchet.key_for_epoch(epoch)
        self._epoch = epoch
        self._pseudonym_key = hmac.new(epoch_key, PSEUDONYM_LABEL, hashlib.sha256).digest()
        self._fingerprint_key = hmac.new(epoch_key, FINGERPRINT_LABEL, hashlib.sha256).digest()
        self._mac_cache.clear()
        self._fingerprint_cache.clear()

    def is_opted_out(self, mac: bytes) -> bool:
        return mac in self._opt_out

    def pseudonym(self, mac: bytes) -> int:
        """Pseudonym of ``mac`` in the current epoch (call :meth:`use_epoch` first)."""
        cached = self._mac_cache.get(mac)
        if cached is not None:
            return cached
        digest = hmac.digest(self._pseudonym_key, mac, "sha256")
        value = int.from_bytes(digest[:8], "big", signed=True)
        if len(self._mac_cache) >= MAX_CACHED_MACS:
            self._mac_cache.clear()
        self._mac_cache[mac] = value
        return value

    def fingerprint(self, information_elements: bytes) -> int:
        """32-bit keyed id of the IE layout (SSID and channel excluded)."""
        cached = self._fingerprint_cache.get(information_elements)
        if cached is not None:
            return cached
        digest = hmac.digest(self._fingerprint_key, ie_signature(information_elements), "sha256")
        value = int.from_bytes(digest[:4], "big")
        if len(self._fingerprint_cache) >= MAX_CACHED_MACS:
            self._fingerprint_cache.clear()
        self._fingerprint_cache[information_elements] = value
        return value
