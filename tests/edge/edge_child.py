"""Child processes for the edge crash tests: they run real agent parts until SIGKILLed.

    python -m tests.edge.edge_child append SPOOL        append forever, acking now and then
    python -m tests.edge.edge_child uplink SPOOL PORT   run an uplink against 127.0.0.1:PORT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.edge.edge_helpers import DEVICE, SITE, message_maker

from edge_agent.spool import Spool
from edge_agent.uplink import Uplink, UplinkConfig
from shared.signing import DeviceSigner


def append_forever(path: Path) -> None:
    spool = Spool(path)
    make = message_maker(DeviceSigner.generate(), events=50)
    while True:
        seq = spool.append(make, 50)
        if seq % 7 == 0:
            spool.ack(seq - 5)
        print(seq, flush=True)


def run_uplink(path: Path, port: int) -> None:
    spool = Spool(path)
    uplink = Uplink(UplinkConfig(host="127.0.0.1", port=port, keepalive_s=5), spool, SITE, DEVICE,
                    status_provider=lambda: {"agent_version": "test"})
    uplink.start()
    while True:
        print(uplink.stats().connection, flush=True)
        time.sleep(0.2)


if __name__ == "__main__":
    if sys.argv[1] == "append":
        append_forever(Path(sys.argv[2]))
    else:
        run_uplink(Path(sys.argv[2]), int(sys.argv[3]))
