"""A fleet directory: the CA, the broker's and collectors' certificates, key groups and device bundles.

    FLEET/
      ca/fleet-ca.key, ca/fleet-ca.crt           keep the key offline; it can mint devices
      broker/broker.crt, broker.key, fleet-ca.crt       → /etc/mosquitto/certs/
      collectors/NAME/collector-mqtt.crt, .key, fleet-ca.crt
      key-groups/GROUP/pseudonym.key             the group's ratchet state (see below)
      enrollments/SITE.DEVICE.json               for `footfall-collector device enroll --from-record`
      devices/SITE/DEVICE/                       the bundle for the SD card's boot partition

A key group's file is ratcheted forward to the current epoch every time a
device is provisioned from it, so the fleet never keeps a key older than the
newest device needs: whoever holds the file can compute that group's
pseudonyms from its epoch on, never before. Keep the fleet directory
offline, like the CA key.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from shared.provision.pki import (
    COLLECTOR_CN,
    FleetCA,
    ProvisionError,
    certificate_pem,
    device_cn,
    write_private_key,
    write_public,
    write_secret,
)
from shared.signing import DeviceSigner
from shared.topics import check_id

#: Where the installer puts things on the device; agent.yaml names these paths.
DEVICE_CONFIG_DIR = Path("/etc/footfall")
DEVICE_CREDENTIALS_DIR = DEVICE_CONFIG_DIR / "credentials"
DEVICE_STATE_DIR = Path("/var/lib/footfall")
#: The repository's deploy/ folder: the installer, the unit and the sysusers file go into every bundle.
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"


@dataclass(frozen=True)
class DeviceOptions:
    site_id: str
    device_id: str
    key_group: str
    broker_host: str
    broker_port: int = 8883
    wifi_interface: str = "wlan1"
    camera: str | None = None
    #: What the installer passes to pip, e.g. ``footfall[edge]==0.1.0``.
    package: str = "footfall[edge]"
    wheels: Path | None = None


class Fleet:
    """Operations on one fleet directory; every write names its file in errors."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths ---------------------------------------------------------------------

    @property
    def ca_key_path(self) -> Path:
        return self.root / "ca" / "fleet-ca.key"

    @property
    def ca_certificate_path(self) -> Path:
        return self.root / "ca" / "fleet-ca.crt"

    def key_group_path(self, group: str) -> Path:
        return self.root / "key-groups" / check_id(group, "key group") / "pseudonym.key"

    def enrollment_path(self, site_id: str, device_id: str) -> Path:
        return self.root / "enrollments" / f"{site_id}.{device_id}.json"

    def bundle_dir(self, site_id: str, device_id: str) -> Path:
        return self.root / "devices" / site_id / device_id

    # -- the CA and the servers --------------------------------------------------------

    def create_ca(self, name: str) -> Path:
        if self.ca_key_path.exists():
            raise ProvisionError(f"{self.ca_key_path}: this fleet already has a CA; a new one would orphan every device")
        FleetCA.create(name).save(self.ca_key_path, self.ca_certificate_path)
        return self.ca_certificate_path

    def ca(self) -> FleetCA:
        return FleetCA.load(self.ca_key_path, self.ca_certificate_path)

    def issue_broker(self, server_names: list[str]) -> Path:
        """The broker's server certificate for the names devices connect to (DNS names or IPs)."""
        if not server_names:
            raise ProvisionError("name at least one host the devices use to reach the broker (--host)")
        return self._issue(self.root / "broker", "broker", server_names[0], server_names)

    def issue_collector(self, name: str) -> Path:
        """A client certificate for a collector; all collectors share the CN the ACL grants."""
        return self._issue(self.root / "collectors" / check_id(name, "collector name"), "collector-mqtt", COLLECTOR_CN)

    def _issue(self, directory: Path, stem: str, cn: str, server_names: list[str] | None = None) -> Path:
        ca = self.ca()
        key, certificate = ca.issue(cn, server_names=server_names)
        write_private_key(directory / f"{stem}.key", key)
        write_public(directory / f"{stem}.crt", certificate_pem(certificate))
        write_public(directory / "fleet-ca.crt", certificate_pem(ca.certificate))
        return directory

    # -- key groups ----------------------------------------------------------------------

    def create_key_group(self, group: str, start: dt.date, period_s: int) -> Path:
        from edge_agent.wifi.ratchet import KeyRatchet  # the ratchet's own state format

        path = self.key_group_path(group)
        if path.exists():
            raise ProvisionError(f"{path}: key group {group} exists; its devices share this key, so it is never replaced")
        start_s = dt.datetime.combine(start, dt.time(), dt.timezone.utc).timestamp()
        KeyRatchet.create(path, start_s, period_s)
        return path

    def current_group_state(self, group: str) -> bytes:
        """The group's ratchet state moved forward to today's epoch (never backwards), as file bytes."""
        from edge_agent.wifi.ratchet import KeyRatchet, epoch_of

        path = self.key_group_path(group)
        if not path.exists():
            raise ProvisionError(f"{path}: no key group {group}; create it with `footfall provision key-group`")
        ratchet = KeyRatchet.load(path)
        ratchet.key_for_epoch(max(ratchet.epoch, epoch_of(time.time(), ratchet.period_s)))
        return path.read_bytes()

    # -- devices -----------------------------------------------------------------------------

    def provision_device(self, options: DeviceOptions) -> Path:
        """Keys, certificate, agent.yaml, enrollment record and installer, in the device's bundle directory."""
        site_id, device_id = check_id(options.site_id, "site id"), check_id(options.device_id, "device id")
        bundle = self.bundle_dir(site_id, device_id)
        if bundle.exists():
            raise ProvisionError(f"{bundle}: device {site_id}/{device_id} was provisioned before; remove the folder to redo it")
        group_state = self.current_group_state(options.key_group)
        period_s = json.loads(group_state)["period_s"]
        ca = self.ca()
        tls_key, certificate = ca.issue(device_cn(site_id, device_id))
        signer = DeviceSigner.generate()

        signer.save(bundle / "secrets" / "device.key")
        write_private_key(bundle / "secrets" / "mqtt-client.key", tls_key)
        write_secret(bundle / "secrets" / "pseudonym.key", group_state)
        write_public(bundle / "mqtt-client.crt", certificate_pem(certificate))
        write_public(bundle / "fleet-ca.crt", certificate_pem(ca.certificate))
        write_public(bundle / "agent.yaml", agent_yaml(options, period_s).encode())
        write_public(bundle / "package.txt", f"{options.package}\n".encode())
        for source, name, mode in (
            (DEPLOY_DIR / "firstboot" / "footfall-firstboot.sh", "footfall-firstboot.sh", 0o755),
            (DEPLOY_DIR / "systemd" / "footfall-agent.service", "footfall-agent.service", 0o644),
            (DEPLOY_DIR / "sysusers" / "footfall.conf", "footfall.sysusers", 0o644),
        ):
            if not source.is_file():
                raise ProvisionError(f"{source} is missing: run `footfall provision` from a footfall source checkout")
            write_public(bundle / name, source.read_bytes(), mode)
        if options.wheels is not None:
            shutil.copytree(options.wheels, bundle / "wheels")

        record = enrollment_record(site_id, device_id, signer, options.key_group)
        write_public(self.enrollment_path(site_id, device_id), record)
        write_public(bundle / "enrollment.json", record)
        return bundle


def enrollment_record(site_id: str, device_id: str, signer: DeviceSigner, key_group: str) -> bytes:
    """What the collector needs to accept the device's batches: no secret in it."""
    record = {
        "site_id": site_id,
        "device_id": device_id,
        "public_key": signer.public_key_text,
        "certificate_cn": device_cn(site_id, device_id),
        "key_group": key_group,
        "provisioned_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return (json.dumps(record, indent=2) + "\n").encode()


def agent_yaml(options: DeviceOptions, period_s: int) -> str:
    """The device's agent.yaml: every path is where the first-boot installer puts the file."""
    camera = (
        f"camera:\n  enabled: true\n  source: {json.dumps(options.camera)}\n" if options.camera else ""
    )
    return f"""# footfall-agent configuration, written by `footfall provision device`.
# Secrets are not in this file: the paths below hold them (root-only on disk;
# the service reads systemd's private copies at the same paths).
site_id: {options.site_id}
device_id: {options.device_id}
state_dir: {DEVICE_STATE_DIR}
signing_key: {DEVICE_CREDENTIALS_DIR / "device.key"}
log_level: INFO

pseudonym:
  key_file: {DEVICE_STATE_DIR / "pseudonym.key"}
  period_s: {period_s}            # must match the key group ({options.key_group})

wifi:
  interface: {options.wifi_interface}

{camera}mqtt:
  host: {options.broker_host}
  port: {options.broker_port}
  tls: true
  ca_path: {DEVICE_CONFIG_DIR / "fleet-ca.crt"}
  cert_path: {DEVICE_CONFIG_DIR / "mqtt-client.crt"}
  key_path: {DEVICE_CREDENTIALS_DIR / "mqtt-client.key"}
"""
