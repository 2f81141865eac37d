"""``footfall-agent calibrate``: show the installer what the counter sees, and what to change.

Runs the real counting path on the configured camera (or a video) for a few
seconds, writes one PNG on the device — the view with the line, its
hysteresis band, the in side, the detections, the tracks and the counts —
and prints plain advice: measured person size against the configured one,
whether anyone crossed, whether the lights or noise keep the background
busy. The PNG is written locally only; nothing here touches the network.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from edge_agent.camera.config import CameraConfig
from edge_agent.camera.draw import caption, draw_overlay
from edge_agent.camera.pipeline import CountingPipeline
from edge_agent.camera.source import CameraSource
from edge_agent.config import AgentConfig

EXIT_OK, EXIT_FAILURE = 0, 1
#: A measured person size this far off the configured one is worth changing.
SIZE_ADVICE_RATIO = 1.3
#: Below this many frames per second on the device, fast walkers get missed.
MIN_DEVICE_FPS = 8.0
#: A background busier than this share of the picture on a typical frame is noise, not people.
BUSY_FOREGROUND_SHARE = 0.2


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="how much video to watch and count (default 10)")
    parser.add_argument("--out", type=Path, help="PNG to write; default <state_dir>/calibrate.png")
    parser.add_argument("--source", help="override camera.source: 0, /dev/video0, rtsp://..., or a video file")


@dataclass
class CalibrationRun:
    """What one calibration run saw."""

    frames: int = 0
    seconds_of_video: float = 0.0
    processing_fps: float = 0.0
    blob_sizes_px: list[tuple[int, int]] = field(default_factory=list)
    foreground_shares: list[float] = field(default_factory=list)
    image: np.ndarray | None = None
    pipeline: CountingPipeline | None = None
    error: str = ""


def calibrate(config: CameraConfig, seconds: float) -> CalibrationRun:
    """Count for ``seconds`` of video and keep the most telling frame (the one with most tracks)."""
    assert config.source is not None
    stop = threading.Event()
    source = CameraSource(config.source, stop, pace="max", reconnect_min_s=config.reconnect_min_s,
                          reconnect_max_s=config.reconnect_max_s, stall_s=config.stall_s)  # fmt: skip
    deadline = threading.Timer(seconds + config.stall_s + 5.0, stop.set)  # a live camera that never answers
    deadline.start()
    run = CalibrationRun()
    best_tracks, busy_s = -1, 0.0
    try:
        for frame in source.frames():
            if run.pipeline is None:
                height_px, width_px = frame.image.shape[:2]
                run.pipeline = CountingPipeline(config, width_px, height_px, source.fps)
            pipeline = run.pipeline
            started_s = time.perf_counter()
            pipeline.process(frame.image, frame.t_s)
            busy_s += time.perf_counter() - started_s
            run.frames += 1
            run.blob_sizes_px.extend(pipeline.background.single_blob_sizes_px)
            mask = pipeline.background.foreground
            if mask is not None:
                run.foreground_shares.append(cv2.countNonZero(mask) / mask.size)
            shown = sum(1 for track in pipeline.tracker.tracks if track.confirmed)
            if shown >= best_tracks:
                best_tracks, run.image = shown, draw_overlay(pipeline, frame.image)
            if run.frames >= seconds * source.fps:
                break
    finally:
        deadline.cancel()
        stop.set()
    run.seconds_of_video = run.frames / source.fps
    run.processing_fps = run.frames / busy_s if busy_s else 0.0
    if run.pipeline is not None:
        run.pipeline.finish()
        if run.image is not None:
            counts = run.pipeline.counter.counts
            caption(run.image, f"after {run.seconds_of_video:.0f} s: in {counts['in']}  out {counts['out']}")
    if not run.frames:
        run.error = source.status.last_error or "no frames"
    return run


def advice(config: CameraConfig, run: CalibrationRun) -> list[str]:
    """Plain-language suggestions for the installer."""
    pipeline = run.pipeline
    assert pipeline is not None
    lines = []
    if run.blob_sizes_px:
        widths, heights = zip(*run.blob_sizes_px)
        width_frac = float(np.median(widths)) / pipeline.width_px
        height_frac = float(np.median(heights)) / pipeline.height_px
        configured = (config.person.width_frac, config.person.height_frac)
        off = max(width_frac / configured[0], configured[0] / width_frac, height_frac / configured[1], configured[1] / height_frac)
        if off > SIZE_ADVICE_RATIO:
            lines.append(
                f"people look {width_frac:.3f} x {height_frac:.3f} of the frame (median of {len(widths)} blobs), "
                f"configured {configured[0]:.3f} x {configured[1]:.3f}: set camera.person.width_frac: {width_frac:.3f} "
                f"and camera.person.height_frac: {height_frac:.3f}"
            )
        else:
            lines.append(f"person size fits: measured {width_frac:.3f} x {height_frac:.3f} of the frame")
    else:
        lines.append("nobody walked through the view: run calibrate again while people pass (or raise --seconds)")
    counts = pipeline.counter.counts
    if not (counts["in"] or counts["out"]):
        lines.append(
            "no crossing counted: check that camera.line.points lies across the walking path (red line in the PNG), "
            "and watch longer with --seconds"
        )
    lines.append(
        f"the IN arrow points to the {config.line.in_side} of the picture: if people entering walk the other way, "
        "change camera.line.in_side"
    )
    if run.foreground_shares and float(np.median(run.foreground_shares)) > BUSY_FOREGROUND_SHARE:
        lines.append(
            "the background is busy (flicker, noise, moving camera): raise camera.background.var_threshold "
            f"(now {config.background.var_threshold:g}) or fix the camera mount"
        )
    if pipeline.background.relearn_count:
        lines.append(f"the lights changed {pipeline.background.relearn_count} time(s); counting pauses briefly each time")
    if run.processing_fps and run.processing_fps < MIN_DEVICE_FPS:
        lines.append(
            f"only {run.processing_fps:.1f} frames/s on this device: lower camera.process_width_px "
            f"(now {config.process_width_px})"
        )
    return lines


def cmd_calibrate(agent_config: AgentConfig, args: argparse.Namespace) -> int:
    camera = agent_config.camera
    source = args.source or camera.source
    if not source:
        print("footfall-agent calibrate: no camera: set camera.source in the config or pass --source")
        return EXIT_FAILURE
    camera = replace(camera, source=source)
    run = calibrate(camera, args.seconds)
    if run.error or run.image is None or run.pipeline is None:
        print(f"camera {source}: no picture ({run.error}). Check the cable or URL, then run calibrate again.")
        return EXIT_FAILURE
    out = args.out or agent_config.state_dir / "calibrate.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), run.image):
        print(f"cannot write {out}: pass --out with a writable path")
        return EXIT_FAILURE
    counts = run.pipeline.counter.counts
    print(f"watched {run.seconds_of_video:.1f} s ({run.frames} frames) of {source} at {run.pipeline.width_px}x{run.pipeline.height_px}, "
          f"{run.processing_fps:.0f} frames/s on this device")  # fmt: skip
    print(f"line '{camera.line.id}': in {counts['in']}, out {counts['out']}")
    print(f"picture written (stays on this device): {out}")
    for line in advice(camera, run):
        print(f"- {line}")
    return EXIT_OK
