"""Frames per second of the Wi-Fi edge path, beside scapy and tshark on the same capture.

The brief's target is >= 100,000 frames/s on one core for read -> parse ->
pseudonymise -> sightings -> MAC linking ("edge path (read..agg+link)"); the anchors put that in perspective (scapy full
dissection ~800/s, tshark field extraction ~20,000/s). Every stage runs a few
times in this process and the best run counts, so a noisy neighbour on the
machine does not decide the figure.

    .venv/bin/python bench/wifi_edge.py [CAPTURE] [--repeat 5] [--scapy-sample 3000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.probe import SkipStats, parse_frame

_REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_CAPTURE = "wifi/brno/2022-11-22_position_1.pcap"


class Measurement(NamedTuple):
    stage: str
    frames: int
    seconds: float
    note: str = ""

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds


#: A stage returns (frames, seconds, note); it times itself so that setup
#: (a key ratchet in a temp dir, say) stays outside the measured seconds.
StageResult = tuple[int, float, str]


def best_of(repeat: int, run: Callable[[], StageResult]) -> StageResult:
    """The fastest of ``repeat`` runs."""
    return min((run() for _ in range(repeat)), key=lambda result: result[1])


def read_only(path: Path) -> StageResult:
    reader = open_capture(path)
    started_s = time.perf_counter()
    for _ in reader:
        pass
    return reader.packets, time.perf_counter() - started_s, ""


def read_and_parse(path: Path) -> StageResult:
    reader = open_capture(path)
    stats = SkipStats()
    probe_requests = 0
    started_s = time.perf_counter()
    for timestamp_s, linktype, frame in reader:
        if parse_frame(timestamp_s, linktype, frame, stats) is not None:
            probe_requests += 1
    return reader.packets, time.perf_counter() - started_s, f"{probe_requests:,} probe requests"


def full_path(path: Path) -> StageResult:
    from edge_agent.wifi.pipeline import WifiPath

    wifi_path = WifiPath.for_benchmark()
    add_frame = wifi_path.add_frame
    reader = open_capture(path)
    started_s = time.perf_counter()
    for timestamp_s, linktype, frame in reader:
        add_frame(timestamp_s, linktype, frame)
    sightings = sum(len(window.rows) for window in wifi_path.flush_all())
    return reader.packets, time.perf_counter() - started_s, f"{sightings:,} sightings"


def pipeline_available() -> bool:
    try:
        import edge_agent.wifi.pipeline  # noqa: F401
    except ImportError:
        return False
    return True


def scapy_anchor(path: Path, sample: int) -> StageResult:
    """Full scapy dissection of the first ``sample`` frames, reading what the edge path reads."""
    from scapy.layers.dot11 import Dot11, RadioTap
    from scapy.utils import PcapReader

    frames = 0
    started_s = time.perf_counter()
    with PcapReader(str(path)) as packets:
        for packet in packets:
            if Dot11 in packet:
                packet[Dot11].addr2
                if RadioTap in packet:
                    packet[RadioTap].dBm_AntSignal
            frames += 1
            if frames == sample:
                break
    return frames, time.perf_counter() - started_s, f"sample of {frames:,}, extrapolated"


def tshark_anchor(path: Path) -> StageResult:
    command = ["tshark", "-r", str(path), "-Y", "wlan.fc.type_subtype==4", "-T", "fields"]
    for field in ("wlan.sa", "radiotap.dbm_antsignal", "wlan.seq", "radiotap.channel.freq"):
        command += ["-e", field]
    # tshark exits 2 on a capture cut short mid-packet, after printing every complete one.
    started_s = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    seconds = time.perf_counter() - started_s
    return 0, seconds, "subprocess, -T fields" + (f" (exit status {result.returncode})" if result.returncode else "")


def print_table(rows: list[Measurement], scapy: Measurement, tshark: Measurement | None) -> None:
    header = f"{'stage':<34}{'frames':>9}{'seconds':>10}{'frames/s':>12}{'vs scapy':>10}{'vs tshark':>11}  note"
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.frames:
            figures = f"{row.frames:>9,}{row.seconds:>10.3f}{row.frames_per_s:>12,.0f}"
            figures += f"{row.frames_per_s / scapy.frames_per_s:>9,.0f}x"
            figures += f"{row.frames_per_s / tshark.frames_per_s:>10,.1f}x" if tshark else f"{'n/a':>11}"
        else:
            figures = f"{'n/a':>9}{'n/a':>10}{'n/a':>12}{'n/a':>10}{'n/a':>11}"
        print(f"{row.stage:<34}{figures}  {row.note}")


def profile(path: Path) -> None:
    """Where the time of the whole path goes, for whoever optimises it next."""
    run = full_path if pipeline_available() else read_and_parse
    profiler = cProfile.Profile()
    profiler.runcall(run, path)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> int:
    data_dir = Path(os.environ.get("FOOTFALL_REAL_DATA", _REPO_ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", nargs="?", type=Path, default=data_dir / _DEFAULT_CAPTURE)
    parser.add_argument("--repeat", type=int, default=5, help="runs per stage; the best counts")
    parser.add_argument("--scapy-sample", type=int, default=3000, help="frames scapy dissects")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the whole path")
    args = parser.parse_args()
    if not args.capture.exists():
        print(f"capture not found: {args.capture} (pass a path or set FOOTFALL_REAL_DATA)", file=sys.stderr)
        return 2
    if args.profile:
        profile(args.capture)
        return 0

    print(f"capture: {args.capture}")
    print(f"python {sys.version.split()[0]}, best of {args.repeat} runs, one core\n")
    rows: list[Measurement] = []
    edge_stages: list[tuple[str, Callable[[Path], StageResult]]] = [
        ("read (pcap reader)", read_only),
        ("read + parse", read_and_parse),
    ]
    if pipeline_available():
        edge_stages.append(("edge path (read..agg+link)", full_path))
    for stage, run in edge_stages:
        rows.append(Measurement(stage, *best_of(args.repeat, partial(run, args.capture))))
    if not pipeline_available():
        rows.append(Measurement("edge path (read..agg+link)", 0, 0.0, "pipeline not available"))
    total_frames = rows[0].frames

    anchor_repeat = min(args.repeat, 3)  # the anchors are slow, and their exact figure matters less
    sample, seconds, note = best_of(anchor_repeat, partial(scapy_anchor, args.capture, args.scapy_sample))
    scapy = Measurement("scapy full dissection", total_frames, seconds * total_frames / sample, note)
    rows.append(scapy)
    tshark = None
    if shutil.which("tshark"):
        _, seconds, note = best_of(anchor_repeat, partial(tshark_anchor, args.capture))
        tshark = Measurement("tshark field extraction", total_frames, seconds, note)
        rows.append(tshark)
    else:
        rows.append(Measurement("tshark field extraction", 0, 0.0, "tshark not installed"))
    print_table(rows, scapy, tshark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
