"""``footfall provision …``: the fleet CA, broker and collector certificates, key groups, device bundles, SD cards."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from shared.provision.fleet import DeviceOptions, Fleet
from shared.provision.pki import ProvisionError
from shared.provision.sdcard import install_on_boot_partition


def add_provision_commands(commands: argparse._SubParsersAction) -> None:
    provision = commands.add_parser("provision", help="make certificates, keys and SD-card bundles for a fleet")
    provision.add_argument("--fleet", type=Path, default=Path("fleet"), help="the fleet directory (default ./fleet)")
    actions = provision.add_subparsers(dest="provision_command", required=True, metavar="ACTION")

    ca = actions.add_parser("ca", help="create the fleet's CA (once)")
    ca.add_argument("--name", default="default", help="a name shown in the CA certificate")
    ca.set_defaults(provision=lambda fleet, a: fleet.create_ca(a.name))

    broker = actions.add_parser("broker", help="the MQTT broker's server certificate")
    broker.add_argument("--host", action="append", required=True, help="a DNS name or IP devices connect to; repeatable")
    broker.set_defaults(provision=lambda fleet, a: fleet.issue_broker(a.host))

    collector = actions.add_parser("collector", help="a collector's MQTT client certificate")
    collector.add_argument("--name", default="collector-1", help="a folder name for this collector")
    collector.set_defaults(provision=lambda fleet, a: fleet.issue_collector(a.name))

    group = actions.add_parser("key-group", help="a key group's pseudonym secret (shared by its devices)")
    group.add_argument("group", help="e.g. the site id, or a brand for returning visitors across its sites")
    group.add_argument("--start", type=dt.date.fromisoformat, default=None, help="first day covered (YYYY-MM-DD); default today")
    group.add_argument("--period-s", type=int, default=86_400, help="key period: 86400 = daily rotation")
    group.set_defaults(
        provision=lambda fleet, a: fleet.create_key_group(
            a.group, a.start or dt.datetime.now(dt.timezone.utc).date(), a.period_s
        )
    )

    device = actions.add_parser("device", help="a device's keys, certificate, agent.yaml, enrollment record and bundle")
    device.add_argument("site_id")
    device.add_argument("device_id")
    device.add_argument("--key-group", required=True, help="the key group made with `provision key-group`")
    device.add_argument("--broker-host", required=True, help="the broker's name as in its certificate")
    device.add_argument("--broker-port", type=int, default=8883)
    device.add_argument("--wifi-interface", default="wlan1", help="the monitor-mode capable adapter")
    device.add_argument("--camera", help="camera source (e.g. /dev/video0); default: no camera")
    device.add_argument("--package", default="footfall[edge]", help="what pip installs on the device")
    device.add_argument("--wheels", type=Path, help="a folder of wheels to install offline instead")
    device.set_defaults(
        provision=lambda fleet, a: fleet.provision_device(
            DeviceOptions(
                a.site_id, a.device_id, a.key_group, a.broker_host, a.broker_port,
                a.wifi_interface, a.camera, a.package, a.wheels,
            )  # fmt: skip
        )
    )

    card = actions.add_parser("sd-card", help="copy a device bundle to a mounted boot partition and hook first boot")
    card.add_argument("site_id")
    card.add_argument("device_id")
    card.add_argument("--boot", type=Path, required=True, help="the mounted boot partition, e.g. /media/$USER/bootfs")
    card.set_defaults(
        provision=lambda fleet, a: f"{a.boot} ({install_on_boot_partition(fleet.bundle_dir(a.site_id, a.device_id), a.boot)} image)"
    )


def run_provision(args: argparse.Namespace) -> int:
    try:
        made = args.provision(Fleet(args.fleet), args)
    except (ProvisionError, ValueError) as exc:
        print(f"footfall provision: {exc}", file=sys.stderr)
        return 1
    print(f"footfall provision {args.provision_command}: {made}")
    return 0
