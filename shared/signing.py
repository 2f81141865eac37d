"""Ed25519 keys of devices: the device signs each batch, the collector verifies.

The private key stays on the device (PEM, PKCS#8, mode 0600); the collector
only ever holds the 32-byte raw public key recorded at enrollment. Public keys
travel as standard base64 text (never starting with ``-``, so a CLI never
mistakes one for an option); URL-safe base64 is accepted too.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32


class KeyFileError(Exception):
    """A key file is missing, unreadable or not an Ed25519 key."""


class DeviceSigner:
    """Signs batch bodies with the device's private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key_bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> "DeviceSigner":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: Path) -> "DeviceSigner":
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the device signing key ({exc.strerror})") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path}: not a PEM private key; create one with `footfall-agent keygen`") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: the signing key must be Ed25519")
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the private key as PEM with mode 0600 (created atomically)."""
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @property
    def public_key_text(self) -> str:
        return encode_public_key(self.public_key_bytes)

    def sign(self, body: bytes) -> bytes:
        return self._private_key.sign(body)


def encode_public_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_public_key(text: str) -> bytes:
    """Parse the base64 text form; raise ``ValueError`` with the expected form."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError("public key must be base64 of 32 bytes") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"public key must be 32 bytes, got {len(raw)}")
    return raw


def load_verifier(raw_public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw_public_key)


def is_valid_signature(verifier: Ed25519PublicKey, body: bytes, signature: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        verifier.verify(signature, body)
    except InvalidSignature:
        return False
    return True
