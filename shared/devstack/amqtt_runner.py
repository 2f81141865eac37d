"""Run an amqtt broker on one loopback port until SIGTERM.

The devstack's fallback broker for machines without Mosquitto; started by
`AmqttBroker` as `python -m shared.devstack.amqtt_runner --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session


class AcceptEveryClient(BaseAuthPlugin):
    """Admit every client as a known (not anonymous) client.

    amqtt queues nothing for offline persistent sessions of anonymous
    clients, and its AnonymousAuthPlugin marks everyone anonymous; with this
    plugin `clean_session=False` subscribers get what arrived while away.
    """

    async def authenticate(self, *, session: Session) -> bool:
        return True

    @dataclass
    class Config:
        """No options: the devstack checks no credentials."""


def broker_config(host: str, port: int) -> dict[str, Any]:
    """One TCP listener, no credentials, no $SYS topics, no packet logging (slow)."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {f"{__package__}.amqtt_runner.AcceptEveryClient": {}},
    }


async def serve(host: str, port: int) -> None:
    broker = Broker(broker_config(host, port))
    await broker.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    logging.getLogger(__name__).info("amqtt broker listening on %s:%d", host, port)
    await stopping.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # amqtt logs every connect and packet at INFO; keep the log to problems.
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
