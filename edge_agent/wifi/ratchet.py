"""Forward-secure epoch keys of a key group.

All devices of a key group (a site or a brand) are provisioned with the same
secret for some epoch; epoch ``n`` covers ``[n * period_s, (n + 1) * period_s)``
in UTC. Moving on one epoch replaces the key with ``HMAC-SHA256(key, LABEL)``
and overwrites the state file, so after a step nothing on the device — and
nothing in the cloud, which never had the key — can recompute the pseudonyms
of earlier epochs. Devices of one group stay in step because each derives the
same chain from the same starting point.

The state file is JSON ``{"epoch": n, "period_s": p, "key": base64}`` with
mode 0600, replaced atomically (write, fsync, rename).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

RATCHET_LABEL = b"footfall/v1/ratchet"
KEY_BYTES = 32


class KeyStateError(Exception):
    """The key state file is missing or unusable; the message names the fix."""


class StaleEpochError(Exception):
    """A frame belongs to an epoch whose key is already destroyed."""


def next_key(key: bytes) -> bytes:
    """One step of the one-way ratchet."""
    return hmac.new(key, RATCHET_LABEL, hashlib.sha256).digest()


def epoch_of(timestamp_s: float, period_s: int) -> int:
    return int(timestamp_s // period_s)


@dataclass
class EpochKey:
    epoch: int
    key: bytes


class KeyRatchet:
    """Holds only the current epoch key and steps it forward on demand."""

    def __init__(self, state_path: Path, epoch: int, period_s: int, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyStateError(f"{state_path}: key must be {KEY_BYTES} bytes")
        if period_s < 60:
            raise KeyStateError(f"{state_path}: period_s must be at least 60 seconds")
        self.state_path = state_path
        self.period_s = period_s
        self._current = EpochKey(epoch, key)

    @classmethod
    def load(cls, state_path: Path) -> "KeyRatchet":
        try:
            doc = json.loads(state_path.read_text(encoding="utf-8"))
            key = base64.b64decode(doc["key"], validate=True)
            return cls(state_path, int(doc["epoch"]), int(doc["period_s"]), key)
        except FileNotFoundError:
            raise KeyStateError(
                f"{state_path}: pseudonym key state not found — copy the key group's key file from the "
                "provisioning bundle, or create a standalone one with `footfall-agent keygen`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStateError(f"{state_path}: pseudonym key state is unreadable ({type(exc).__name__})") from None

    @classmethod
    def create(cls, state_path: Path, start_timestamp_s: float, period_s: int = 86_400) -> "KeyRatchet":
        """A fresh random key group starting at the epoch of ``start_timestamp_s``."""
        ratchet = cls(state_path, epoch_of(start_timestamp_s, period_s), period_s, secrets.token_bytes(KEY_BYTES))
        ratchet._persist()
        return ratchet

    @property
    def epoch(self) -> int:
        return self._current.epoch

    def key_for_epoch(self, epoch: int) -> bytes:
        """The key of ``epoch``, stepping (and persisting) forward when it is newer."""
        current = self._current
        if epoch < current.epoch:
            raise StaleEpochError(f"epoch {epoch} is older than the current key epoch {current.epoch}")
        if epoch > current.epoch:
            key = current.key
            for _ in range(epoch - current.epoch):
                key = next_key(key)
            self._current = EpochKey(epoch, key)
            self._persist()
        return self._current.key

    def _persist(self) -> None:
        doc = {
            "epoch": self._current.epoch,
            "period_s": self.period_s,
            "key": base64.b64encode(self._current.key).decode("ascii"),
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_path)
