"""Synthetic load through a real agent: many signed batches, quickly, for chaos tests and the ingest bench.

Replaying a capture is the honest way to test the Wi-Fi path, but it takes
seconds of parsing per few thousand sightings. This skips only the capture:
synthetic sighting windows go into the agent's real ``BatchAssembler`` →
``Spool`` → ``Uplink`` (the same :class:`~edge_agent.service.AgentService`
that ``footfall-agent run`` wires), so batches are signed with the device's
key, spooled, published, resent after an ack timeout and deleted only when
the collector acknowledges them.

Every batch holds exactly ``batch.max_events`` sightings of distinct
pseudonyms (``(device number << 32) + running index``), so a test can check
the database row for row.

    python -m shared.devstack.loadgen --config agent.yaml --batches 500 --rate 20 --wait-acked-s 90

Exit code 0 when the collector acknowledged every batch in time, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import signal
import sys
import time
from pathlib import Path

from edge_agent.config import AgentConfig, load_agent_config
from edge_agent.service import AgentService
from edge_agent.wifi.sightings import ClosedWindow
from shared.logs import configure_logging
from shared.protocol import SightingRow

log = logging.getLogger("footfall.loadgen")

WINDOW_S = 10


def device_number(config: AgentConfig) -> int:
    """A stable 31-bit number per (site, device): the high half of its synthetic pseudonyms."""
    digest = hashlib.sha256(f"{config.site_id}/{config.device_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # below 2**31, so (number << 32) + index fits int64


def synthetic_rows(device: int, first_index: int, count: int, now_s: float) -> list[SightingRow]:
    """``count`` sightings of a recent window with pseudonyms ``(device << 32) + first_index`` onwards."""
    base = device << 32
    window_start_s = int(now_s - 60) // WINDOW_S * WINDOW_S
    return [
        SightingRow(
            window_start_s, base + index, base + index, 1 + index % 7, -40 - index % 50, -55.5, 6,
            index % 3 == 0, index % 9_973, index % 4_096, (index + 3) % 4_096,
        )  # fmt: skip
        for index in range(first_index, first_index + count)
    ]


def synthetic_window(config: AgentConfig, first_index: int, now_s: float) -> ClosedWindow:
    """One window of ``batch.max_events`` sightings of this device, pseudonyms ``first_index`` onwards."""
    rows = synthetic_rows(device_number(config), first_index, config.batch.max_events, now_s)
    return ClosedWindow(int(now_s) // config.pseudonym.period_s, WINDOW_S, rows)


def run(config: AgentConfig, batches: int, rate_per_s: float | None, wait_acked_s: float) -> int:
    """Spool and publish ``batches`` batches (at ``rate_per_s``, or as fast as possible), then wait for acks."""
    service = AgentService(config)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: service.stop())
    service.start()
    started_s = time.monotonic()
    try:
        for number in range(batches):
            if service.stop_event.is_set():
                break
            if rate_per_s:
                delay_s = started_s + number / rate_per_s - time.monotonic()
                if delay_s > 0:
                    time.sleep(delay_s)
            service.assembler.add_windows([synthetic_window(config, number * config.batch.max_events, time.time())])
        service.assembler.flush()
    finally:
        delivered = service.close(wait_acked_s)
    written = service.assembler.batches_written
    print(f"loadgen batches={written} sightings={written * config.batch.max_events} delivered={delivered}", flush=True)
    return 0 if delivered and written == batches else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.devstack.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="agent.yaml of a provisioned device")
    parser.add_argument("--batches", type=int, required=True, help="how many batches to send")
    parser.add_argument("--rate", type=float, default=None, help="batches per second; default as fast as possible")
    parser.add_argument("--wait-acked-s", type=float, default=120.0, help="how long to wait for the collector's acks")
    args = parser.parse_args(argv)
    config = load_agent_config(args.config)
    configure_logging(config.log_level)
    return run(config, args.batches, args.rate, args.wait_acked_s)


if __name__ == "__main__":
    sys.exit(main())
