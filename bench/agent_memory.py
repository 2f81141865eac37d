"""Edge agent memory: the resident set of a real agent process at work, beside its import floor.

The brief's target: ≤ 150 MB RSS steady on the device. A real agent process
(``footfall-agent replay``) sends into a real collector through Mosquitto,
as in bench/ingest.py, while this script samples its VmRSS every 100 ms:

* Wi-Fi: a synthetic busy hour (``--phones`` phones, most of them rotating
  randomised MACs, so the linker holds many clusters) replayed at
  ``--speed`` times its pace;
* camera: the real femb door video (640×480) at its own pace, counted
  with that door's line and person size.

"Steady" is the median of the second half of a run's samples, after the
linker, tracker and spool have filled up; "peak" is the highest sample.
The anchor is the same interpreter after importing everything the agent
imports and doing nothing (its floor), measured in this run. On a device
one agent runs both paths, so the last line adds the camera's cost above
the floor to the Wi-Fi run — an estimate, printed as one.

    .venv/bin/python bench/agent_memory.py [--phones 1500] [--speed 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from shared.devstack import MosquittoBroker, ThrowawayPostgres
from shared.devstack.synthetic_capture import write_synthetic_capture
from shared.devstack.system import LocalSystem

_REPO_ROOT = Path(__file__).resolve().parent.parent
SITE = "memory-bench"
TARGET_RSS_MB = 150
SAMPLE_INTERVAL_S = 0.1
FEMB = "video/femb_peopleCounter.avi"
#: femb's installation settings (as in docs/camera.md and the demo).
FEMB_CAMERA = {
    "line": {"id": "door", "points": [[0.0, 0.5], [1.0, 0.5]], "in_side": "bottom"},
    "person": {"width_frac": 0.11, "height_frac": 0.2},
}
#: What an agent process imports before it does anything.
AGENT_IMPORTS = "import edge_agent.cli, edge_agent.service, edge_agent.camera.pipeline, edge_agent.wifi.pipeline, cv2, numpy"


@dataclass(frozen=True)
class Footprint:
    peak_mb: float
    steady_mb: float
    seconds: float


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample_until_exit(argv: list[str], log_path: Path) -> Footprint:
    """Run ``argv``, sampling its RSS until it exits; fail loudly if it fails."""
    started_s = time.monotonic()
    samples: list[float] = []
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            if (value := rss_mb(process.pid)) is not None:
                samples.append(value)
            time.sleep(SAMPLE_INTERVAL_S)
    if process.returncode != 0 or not samples:
        raise SystemExit(f"{' '.join(argv[:6])}… exited {process.returncode}; see {log_path}")
    return Footprint(max(samples), statistics.median(samples[len(samples) // 2 :]), time.monotonic() - started_s)


def import_floor_mb() -> float:
    """RSS of an interpreter that has imported the agent and its libraries, and waits."""
    process = subprocess.Popen([sys.executable, "-c", f"{AGENT_IMPORTS}; import time; time.sleep(30)"])
    try:
        deadline_s = time.monotonic() + 30
        last, steady_for = 0.0, 0
        while steady_for < 5 and time.monotonic() < deadline_s:  # imports done: RSS stops moving
            time.sleep(0.2)
            value = rss_mb(process.pid) or 0.0
            steady_for = steady_for + 1 if value == last else 0
            last = value
        return last
    finally:
        process.kill()
        process.wait()


def real_data_dir() -> Path:
    return Path(os.environ.get("FOOTFALL_REAL_DATA", _REPO_ROOT.parent / "shared" / "data"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=1_500, help="phones in the synthetic busy hour")
    parser.add_argument("--speed", default="60", help="replay speed of the Wi-Fi hour (60 = one minute)")
    args = parser.parse_args()
    video = real_data_dir() / FEMB
    if not video.is_file():
        raise SystemExit(f"the door video {video} is missing (set FOOTFALL_REAL_DATA)")

    floor_mb = import_floor_mb()
    with tempfile.TemporaryDirectory(prefix="footfall-memory-") as workdir, ThrowawayPostgres(
        durable=False
    ) as pg, MosquittoBroker() as broker:
        work = Path(workdir)
        day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        capture = work / "busy-hour.pcap"
        frames = write_synthetic_capture(capture, day.timestamp() + 9 * 3_600, phones=args.phones)
        system = LocalSystem(work, pg.create_database("bench"), broker.host, broker.port)
        try:
            system.migrate()
            system.add_site(SITE, "UTC")
            system.start_collector("collector", limits={"device_events_per_s": 0})
            start = day.date().isoformat()
            print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}", flush=True)
            print(f"Wi-Fi: synthetic hour, {args.phones:,} phones, {frames:,} probe requests, speed {args.speed}", flush=True)
            sniffer = system.provision_device(SITE, "sniffer", start)
            wifi = sample_until_exit(
                system.agent_replay_command(sniffer, capture, speed=args.speed, wait_acked_s=120), work / "wifi.log"
            )
            print(f"camera: {FEMB} at its own pace", flush=True)
            door = system.provision_device(SITE, "door", start, camera=FEMB_CAMERA)
            camera = sample_until_exit(
                system.agent_replay_command(door, video, speed="1", wait_acked_s=60, kind="video"), work / "camera.log"
            )
        finally:
            system.close()

    both_mb = wifi.steady_mb + camera.steady_mb - floor_mb
    print(f"\n{'agent process':<44}{'peak MB':>9}{'steady MB':>11}{'x floor':>9}{'target MB':>11}")
    print(f"{'import floor (anchor: imports only, idle)':<44}{'':>9}{floor_mb:>11.0f}{1.0:>9.2f}")
    for name, footprint in (("Wi-Fi replay of the busy hour", wifi), ("camera replay of the door video", camera)):
        print(f"{name:<44}{footprint.peak_mb:>9.0f}{footprint.steady_mb:>11.0f}{footprint.steady_mb / floor_mb:>9.2f}")
    print(f"{'both paths in one agent (estimate)':<44}{'':>9}{both_mb:>11.0f}{both_mb / floor_mb:>9.2f}{TARGET_RSS_MB:>11}")
    met = max(wifi.peak_mb, camera.peak_mb, both_mb) <= TARGET_RSS_MB
    print("target met" if met else "TARGET NOT MET")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
