"""``footfall-collector``: run the collector, migrate the schema, manage sites and devices.

Exit codes: 0 success, 1 runtime failure (database unreachable, schema
mismatch, refused enrollment), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncpg

from collector.config import ConfigError, CollectorConfig, load_collector_config, with_dsn
from collector.db.migrate import MigrationError, apply_migrations
from collector.registry import RegistryError, add_site, check_time_zone, enroll_device, list_devices, list_sites
from collector.service import run_service
from shared.signing import decode_public_key
from shared.topics import check_id

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

class UsageError(Exception):
    """Bad arguments; printed as one line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="collector YAML config (default: built-in defaults)")
    common.add_argument("--dsn", help="PostgreSQL DSN; overrides database.dsn and FOOTFALL_DATABASE_DSN")
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    parser = argparse.ArgumentParser(
        prog="footfall-collector",
        description="Receive signed footfall batches over MQTT and commit them to PostgreSQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the collector until SIGTERM")
    run.add_argument("--no-migrate", action="store_true", help="do not apply pending schema migrations first")
    run.set_defaults(handler=_run)

    migrate = commands.add_parser("migrate", parents=[common], help="apply pending schema migrations")
    migrate.set_defaults(handler=_with_connection(_migrate))

    site = commands.add_parser("site", help="add or list sites").add_subparsers(
        dest="site_command", required=True, metavar="ACTION"
    )
    site_add = site.add_parser("add", parents=[common], help="add a site (or update its name and time zone)")
    site_add.add_argument("site_id")
    site_add.add_argument("--time-zone", required=True, help="IANA time zone of the site, e.g. Europe/Prague")
    site_add.add_argument("--name", help="human-readable name")
    site_add.set_defaults(handler=_with_connection(_site_add))
    site_list = site.add_parser("list", parents=[common], help="list sites")
    site_list.set_defaults(handler=_with_connection(_site_list))

    device = commands.add_parser("device", help="enroll or list devices").add_subparsers(
        dest="device_command", required=True, metavar="ACTION"
    )
    enroll = device.add_parser("enroll", parents=[common], help="record a device's Ed25519 public key")
    enroll.add_argument("site_id", nargs="?")
    enroll.add_argument("device_id", nargs="?")
    enroll.add_argument(
        "--public-key",
        help="base64 public key printed by `footfall-agent keygen`",
    )
    enroll.add_argument(
        "--from-record", metavar="FILE", help="the enrollment record written by `footfall provision device` instead"
    )
    enroll.add_argument("--replace-key", action="store_true", help="allow replacing the key of an enrolled device")
    enroll.set_defaults(handler=_with_connection(_device_enroll))
    device_list = device.add_parser("list", parents=[common], help="list devices with their ack watermark")
    device_list.add_argument("--site", help="only this site")
    device_list.set_defaults(handler=_with_connection(_device_list))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    try:
        _check_arguments(args)
        config = load_collector_config(args.config)
        if args.dsn:
            config = with_dsn(config, args.dsn)
        return asyncio.run(args.handler(args, config))
    except (ConfigError, UsageError) as error:
        print(f"footfall-collector: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (MigrationError, RegistryError) as error:
        print(f"footfall-collector: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        print(f"footfall-collector: database error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


def _check_arguments(args: argparse.Namespace) -> None:
    """Catch bad IDs, zones and keys before touching the database, as usage errors."""
    if getattr(args, "device_command", None) == "enroll":
        _take_enrollment(args)
    try:
        for name, what in (("site_id", "site id"), ("device_id", "device id"), ("site", "site id")):
            if getattr(args, name, None) is not None:
                check_id(getattr(args, name), what)
        if getattr(args, "time_zone", None) is not None:
            check_time_zone(args.time_zone)
        if getattr(args, "public_key", None) is not None:
            args.public_key = decode_public_key(args.public_key)
    except (ValueError, RegistryError) as error:
        raise UsageError(str(error)) from None


def _take_enrollment(args: argparse.Namespace) -> None:
    """Fill site, device and key from ``--from-record``, or insist on all three on the command line."""
    if args.from_record is None:
        if None in (args.site_id, args.device_id, args.public_key):
            raise UsageError("device enroll needs SITE_ID DEVICE_ID --public-key=KEY, or --from-record FILE")
        return
    if args.public_key is not None:
        raise UsageError("give either --public-key or --from-record, not both")
    try:
        record = json.loads(Path(args.from_record).read_text(encoding="utf-8"))
        site_id, device_id, public_key = record["site_id"], record["device_id"], record["public_key"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f"{args.from_record}: not an enrollment record ({type(error).__name__}); use the .json file that "
            "`footfall provision device` wrote under enrollments/"
        ) from None
    for given, recorded in ((args.site_id, site_id), (args.device_id, device_id)):
        if given is not None and given != recorded:
            raise UsageError(f"{args.from_record} is for {site_id}/{device_id}, not {args.site_id}/{args.device_id}")
    args.site_id, args.device_id, args.public_key = site_id, device_id, public_key


async def _run(args: argparse.Namespace, config: CollectorConfig) -> int:
    return await run_service(config, migrate=not args.no_migrate)


Handler = Callable[[argparse.Namespace, asyncpg.Connection], Awaitable[int]]


def _with_connection(handler: Handler) -> Callable[[argparse.Namespace, CollectorConfig], Awaitable[int]]:
    """Run ``handler`` with one database connection, closed afterwards."""

    async def call(args: argparse.Namespace, config: CollectorConfig) -> int:
        connection = await asyncpg.connect(config.database.dsn, timeout=10)
        try:
            return await handler(args, connection)
        finally:
            await connection.close()

    return call


async def _migrate(_args: argparse.Namespace, connection: asyncpg.Connection) -> int:
    applied = await apply_migrations(connection)
    print(f"applied {', '.join(applied)}" if applied else "schema is up to date")
    return EXIT_OK


async def _site_add(args: argparse.Namespace, connection: asyncpg.Connection) -> int:
    await add_site(connection, args.site_id, args.time_zone, args.name)
    print(f"site {args.site_id} ({args.time_zone}) saved")
    return EXIT_OK


async def _site_list(_args: argparse.Namespace, connection: asyncpg.Connection) -> int:
    print(f"{'SITE':<20} {'TIME ZONE':<24} {'DEVICES':>7}  NAME")
    for site in await list_sites(connection):
        print(f"{site.site_id:<20} {site.time_zone:<24} {site.devices:>7}  {site.name or ''}")
    return EXIT_OK


async def _device_enroll(args: argparse.Namespace, connection: asyncpg.Connection) -> int:
    changed = await enroll_device(connection, args.site_id, args.device_id, args.public_key, args.replace_key)
    print(f"device {args.site_id}/{args.device_id} {'enrolled' if changed else 'already enrolled with this key'}")
    return EXIT_OK


async def _device_list(args: argparse.Namespace, connection: asyncpg.Connection) -> int:
    print(f"{'SITE':<20} {'DEVICE':<20} {'ACKED SEQ':>10}  {'LAST SEEN (UTC)':<20} VERSION")
    for device in await list_devices(connection, args.site):
        seen = f"{device.last_seen_at:%Y-%m-%d %H:%M:%S}" if device.last_seen_at else "never"
        print(f"{device.site_id:<20} {device.device_id:<20} {device.acked_seq:>10}  {seen:<20} {device.agent_version or ''}")
    return EXIT_OK
