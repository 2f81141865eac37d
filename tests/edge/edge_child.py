"""Child processes for the edge crash tests: they run real agent parts until SIGKILLed.

    python -m tests.edge.edge_child append SPOOL        append forever, acking now and then
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.edge.edge_helpers import message_maker

from edge_agent.spool import Spool
from shared.signing import DeviceSigner


def append_forever(path: Path) -> None:
    spool = Spool(path)
    make = message_maker(DeviceSigner.generate(), events=50)
    while True:
        seq = spool.append(make, 50)
        if seq % 7 == 0:
            spool.ack(seq - 5)
        print(seq, flush=True)


if __name__ == "__main__":
    append_forever(Path(sys.argv[2]))
