"""``footfall-agent``: run the store device's agent, replay a capture, make keys.

Exit codes: 0 success, 1 runtime failure (e.g. not everything acknowledged
in time), 2 usage or configuration error — the message names the file, the
key and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

from edge_agent.camera.calibrate import add_calibrate_arguments, cmd_calibrate
from edge_agent.camera.onnx_detector import OnnxModelError
from edge_agent.config import AgentConfig, load_agent_config
from edge_agent.doctor import add_doctor_arguments, cmd_doctor
from edge_agent.service import AgentService
from edge_agent.wifi.capture import ReplaySource
from edge_agent.wifi.pcap import CaptureFormatError
from edge_agent.wifi.ratchet import KeyRatchet, KeyStateError
from shared.config import ConfigError
from shared.logs import configure_logging
from shared.signing import DeviceSigner, KeyFileError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("footfall.agent")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_agent_config(args.config)
        configure_logging(args.log_level or config.log_level)
        return args.handler(config, args)
    except (ConfigError, KeyStateError, KeyFileError, CaptureFormatError, OnnxModelError) as exc:
        print(f"footfall-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="footfall-agent", description="footfall store device agent")
    parser.add_argument("--config", type=Path, default=Path("/etc/footfall/agent.yaml"), help="agent.yaml path")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override log_level")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the agent as a service (replays wifi.replay_file when set)")
    run.set_defaults(handler=cmd_run)

    replay = commands.add_parser("replay", help="replay a capture or a door video through the real path, then exit")
    what = replay.add_mutually_exclusive_group(required=True)
    what.add_argument("--pcap", type=Path, help="capture file to replay")
    what.add_argument("--video", type=Path, help="door video to count with the camera section's line and sizes")
    replay.add_argument("--speed", default="max", help="1 = capture pace, 10 = ten times faster, max = unthrottled")
    replay.add_argument(
        "--wait-acked-s", type=float, default=120.0, help="how long to wait for the collector's acks before exiting"
    )
    replay.set_defaults(handler=cmd_replay)

    calibrate = commands.add_parser("calibrate", help="write a PNG of the camera view with line, detections and tracks")
    add_calibrate_arguments(calibrate)
    calibrate.set_defaults(handler=cmd_calibrate)

    doctor = commands.add_parser("doctor", help="preflight checks, each failure with its fix; exit 1 if any fails")
    add_doctor_arguments(doctor)
    doctor.set_defaults(handler=cmd_doctor)

    keygen = commands.add_parser("keygen", help="create the device signing key and a standalone pseudonym key")
    keygen.add_argument(
        "--pseudonym-start",
        type=dt.date.fromisoformat,
        help="first day (YYYY-MM-DD) the pseudonym key must cover; default today. Use the capture's day to replay old captures",
    )
    keygen.add_argument("--period-s", type=int, help="pseudonym key period in seconds; default pseudonym.period_s")
    keygen.set_defaults(handler=cmd_keygen)
    return parser


def _parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = -1.0
    if speed <= 0:
        raise ConfigError("--speed", "", f"got {text!r}", "use a positive number or 'max'")
    return speed


def _run_replay(config: AgentConfig, capture: Path, speed: float | None, wait_acked_s: float) -> int:
    service = AgentService(config)
    source = ReplaySource(capture, speed=speed, stop_event=service.stop_event)
    try:
        return _run_wifi(service, source, live=False, wait_acked_s=wait_acked_s)
    finally:
        source.close()


def _run_wifi(
    service: AgentService, source: Iterable[tuple[float, int, bytes] | None], live: bool, wait_acked_s: float
) -> int:
    _stop_on_signals(service)
    service.start()
    try:
        service.run_wifi(source, live=live, total_frames=None)
    finally:
        delivered = service.close(wait_acked_s)
    return _exit_code(service, delivered, wait_acked_s)


def _exit_code(service: AgentService, delivered: bool, wait_acked_s: float) -> int:
    """A stop signal is a clean exit even with batches unacknowledged: they are safe in the spool."""
    if delivered:
        return EXIT_OK
    if service.stop_event.is_set():
        log.info("stopped on request; unacknowledged batches stay in the spool and go out after the next start")
        return EXIT_OK
    log.error("not every batch was acknowledged within %.0f s; they stay in the spool", wait_acked_s)
    return EXIT_FAILURE


def cmd_replay(config: AgentConfig, args: argparse.Namespace) -> int:
    if args.video is not None:
        return _run_camera(_with_video(config, args.video, args.speed), args.wait_acked_s)
    return _run_replay(config, args.pcap, _parse_speed(args.speed), args.wait_acked_s)


def _with_video(config: AgentConfig, video: Path, speed: str) -> AgentConfig:
    """The config with its camera pointed at a video file, played at its own pace or unthrottled."""
    if not video.is_file():
        raise ConfigError("--video", "", f"{video} is not a file", "pass the path of a video file")
    if speed not in ("1", "max"):
        raise ConfigError("--speed", "", f"got {speed!r}", "a video replays at its own pace (1) or unthrottled (max)")
    camera = dataclasses.replace(config.camera, enabled=True, source=str(video), pace="native" if speed == "1" else "max")
    return dataclasses.replace(config, camera=camera)


def _run_camera(config: AgentConfig, wait_acked_s: float) -> int:
    """Count with the camera only (no Wi-Fi source) until the video ends or a stop signal."""
    service = AgentService(config)
    _stop_on_signals(service)
    service.start()
    try:
        service.run_camera()
    finally:
        delivered = service.close(wait_acked_s)
    return _exit_code(service, delivered, wait_acked_s)


def cmd_run(config: AgentConfig, args: argparse.Namespace) -> int:
    """Live capture on wifi.interface (the camera, if enabled, runs beside it), a replay, or the camera alone."""
    wifi = config.wifi
    if wifi.enabled and wifi.replay_file is not None:
        return _run_replay(config, wifi.replay_file, wifi.replay_speed, wait_acked_s=30.0)
    if wifi.enabled and wifi.interface is not None:
        service = AgentService(config)
        return _run_wifi(service, service.live_source(), live=True, wait_acked_s=30.0)
    if config.camera.enabled:
        return _run_camera(config, wait_acked_s=30.0)
    raise ConfigError(
        str(args.config),
        "wifi.interface",
        "nothing to capture: no Wi-Fi interface, no replay file and no camera is configured",
        "set wifi.interface to the monitor-mode interface (e.g. wlan1mon), or wifi.replay_file, or enable the camera",
    )


def cmd_keygen(config: AgentConfig, args: argparse.Namespace) -> int:
    key_path, state_path = config.signing_key_path, config.pseudonym_key_path
    if key_path.exists():
        signer = DeviceSigner.from_file(key_path)
        print(f"signing key exists: {key_path}")
    else:
        signer = DeviceSigner.generate()
        signer.save(key_path)
        print(f"signing key written: {key_path}")
    if state_path.exists():
        print(f"pseudonym key exists: {state_path} (epoch {KeyRatchet.load(state_path).epoch})")
    else:
        start = args.pseudonym_start or dt.datetime.now(dt.timezone.utc).date()
        start_s = dt.datetime.combine(start, dt.time(), dt.timezone.utc).timestamp()
        period_s = args.period_s or config.pseudonym.period_s
        ratchet = KeyRatchet.create(state_path, start_s, period_s)
        print(f"pseudonym key written: {state_path} (epoch {ratchet.epoch}, period {period_s} s)")
    print(f"public key: {signer.public_key_text}")
    print(
        "enroll it on the collector: footfall-collector device enroll "
        f"{config.site_id} {config.device_id} --public-key {signer.public_key_text}"
    )
    return EXIT_OK


def _stop_on_signals(service: AgentService) -> None:
    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the current frame", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


if __name__ == "__main__":
    sys.exit(main())
