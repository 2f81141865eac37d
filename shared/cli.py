"""``footfall``: cross-cutting tools that are neither the agent nor the collector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.provision.cli import add_provision_commands, run_provision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="footfall", description="footfall tools")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the whole system locally on a real capture and print the tables")
    demo.add_argument("--workdir", type=Path, default=Path(".demo"), help="where configs, state and logs go")
    add_provision_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "provision":
        return run_provision(args)
    if args.command == "demo":
        from shared.demo import run_demo  # needs the demo extra (PostgreSQL driver, broker)

        return run_demo(args.workdir)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
