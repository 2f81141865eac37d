"""The fleet's certificates: one CA, a server certificate for the broker, a client certificate per device.

Mosquitto takes a client's identity from its certificate's common name
(``use_identity_as_username``), and its ACL patterns put that name into topic
filters. A device's CN is therefore ``{site_id}/{device_id}`` — two protocol
IDs (``[A-Za-z0-9_-]``) and the slash between them, so ``footfall/v1/%u/batch``
becomes exactly that device's topic. Mosquitto refuses ``+`` and ``#`` in a
substituted name, and IDs cannot hold them anyway. Collectors share the CN
``footfall-collector``, which no device CN can equal (it has no slash).

Keys are ECDSA P-256: every TLS stack on a Raspberry Pi and in Mosquitto
speaks it. (Batch signing keys are Ed25519 and separate: see
``shared/signing.py``.) Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.topics import check_id

COLLECTOR_CN = "footfall-collector"
CA_VALID_DAYS = 20 * 365
#: Devices run unattended for years; rotate by provisioning again (docs/operating.md).
LEAF_VALID_DAYS = 10 * 365


class ProvisionError(Exception):
    """Provisioning cannot go on; the message names the file and the fix."""


def device_cn(site_id: str, device_id: str) -> str:
    """The certificate CN, and so the MQTT user name, of one device."""
    return f"{check_id(site_id, 'site id')}/{check_id(device_id, 'device id')}"


@dataclass(frozen=True)
class FleetCA:
    """The CA that signs every broker, collector and device certificate of one fleet."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str) -> "FleetCA":
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"footfall fleet CA {name}")])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=CA_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @classmethod
    def load(cls, key_path: Path, certificate_path: Path) -> "FleetCA":
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
        except FileNotFoundError as exc:
            raise ProvisionError(f"{exc.filename}: no fleet CA here; create one with `footfall provision ca`") from None
        except ValueError:
            raise ProvisionError(f"{key_path} or {certificate_path} is not a PEM key or certificate") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ProvisionError(f"{key_path}: the fleet CA key must be an EC key")
        return cls(key, certificate)

    def save(self, key_path: Path, certificate_path: Path) -> None:
        write_private_key(key_path, self.key)
        write_public(certificate_path, certificate_pem(self.certificate))

    def issue(self, cn: str, *, server_names: list[str] | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A new key and its certificate: a TLS server certificate when ``server_names`` is given, else a client one."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=LEAF_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.certificate.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        if server_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(server_names)), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_secret(
        path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` with mode 0600 from the first byte on (never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
