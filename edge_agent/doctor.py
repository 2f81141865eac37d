"""``footfall-agent doctor``: preflight checks an installer runs on the device, each with a plain-language fix.

One line per check, ``PASS``, ``FAIL`` or ``SKIP``, the check's name and what
was found; a failure adds ``— fix: …``. Exit code 0 when nothing failed, 1
otherwise, so an install script can stop on it. ``--json`` prints the same
as one JSON object for tools.

The checks only look: doctor never captures a frame, never writes the spool
and connects to the broker under its own client id, so it can run beside the
agent service.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import shutil
import sqlite3
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.wifi.hopper import CommandRunner, run_command
from edge_agent.wifi.live import FIXES, SYSFS_NET, InterfaceState, check_interface
from edge_agent.wifi.ratchet import KeyRatchet, KeyStateError
from shared.signing import DeviceSigner, KeyFileError

BROKER_TIMEOUT_S = 10.0
CAMERA_TIMEOUT_S = 10.0
#: Free space wanted beyond the spool's own bound, for SQLite's WAL, logs and updates.
DISK_HEADROOM_BYTES = 256 << 20
#: A clock before this cannot be right (a Pi without a real-time clock boots in the past).
EARLIEST_PLAUSIBLE_S = 1_735_689_600.0  # 2025-01-01
#: adjtimex(2) returns this while the kernel's clock is not synchronised.
TIME_ERROR = 5


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<15} {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix else text


def passed(name: str, detail: str) -> Check:
    return Check(name, "PASS", detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, "FAIL", detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, "SKIP", detail)


@dataclass
class Doctor:
    """The checks for one agent configuration; ``run`` and ``sysfs_net`` are replaceable for tests."""

    config: AgentConfig
    run: CommandRunner = run_command
    sysfs_net: Path = SYSFS_NET

    def checks(self) -> Iterator[Check]:
        yield from self.wifi()
        yield self.camera()
        yield self.clock()
        yield self.keys()
        yield self.broker()
        yield self.disk()
        yield self.spool()

    # -- Wi-Fi -------------------------------------------------------------------------

    def wifi(self) -> Iterator[Check]:
        wifi = self.config.wifi
        if not wifi.enabled or wifi.interface is None:
            yield skipped("wifi-interface", "no live Wi-Fi capture configured (wifi.interface)")
            return
        interface = wifi.interface
        state = check_interface(interface, self.sysfs_net)
        usable = state.state is InterfaceState.CAPTURING
        if usable:
            yield passed("wifi-interface", f"{interface} is up in monitor mode")
        else:
            yield failed("wifi-interface", f"{interface}: {state.state.value}", FIXES[state.state].format(interface=interface, detail=state.detail))
        yield self.regulatory_domain()
        if not usable:
            yield skipped("channel-hopping", f"needs {interface} in monitor mode first")
            return
        refused = {}
        for channel in wifi.channels:
            result = self.run(["iw", "dev", interface, "set", "channel", str(channel)])
            if result.returncode != 0:
                refused[channel] = result.message
        if not refused:
            yield passed("channel-hopping", f"{interface} tuned to every channel in wifi.channels {wifi.channels}")
        else:
            listing = "; ".join(f"{channel}: {why}" for channel, why in refused.items())
            yield failed(
                "channel-hopping", f"refused {listing}",
                "set the regulatory domain first; remove channels the adapter does not support from wifi.channels "
                "(`iw list` shows them)",
            )  # fmt: skip

    def regulatory_domain(self) -> Check:
        if shutil.which("iw") is None:
            return failed("regulatory", "cannot read it: iw is not installed", "apt-get install iw")
        output = command_output(["iw", "reg", "get"])
        countries = [line.split()[1].rstrip(":") for line in output.splitlines() if line.startswith("country ")]
        if not countries or all(country == "00" for country in countries):
            return failed(
                "regulatory", "no country set (world domain 00: many channels are disabled)",
                "set the Wi-Fi country: `raspi-config nonint do_wifi_country DE` (your country's code)",
            )  # fmt: skip
        return passed("regulatory", f"country {countries[0]}")

    # -- camera ------------------------------------------------------------------------

    def camera(self) -> Check:
        camera = self.config.camera
        if not camera.enabled:
            return skipped("camera", "no camera configured (camera.enabled)")
        import cv2

        source: int | str = int(camera.source) if camera.source and camera.source.isdigit() else str(camera.source)
        capture = cv2.VideoCapture(source)
        try:
            deadline_s = time.monotonic() + CAMERA_TIMEOUT_S
            while capture.isOpened() and time.monotonic() < deadline_s:
                ok, frame = capture.read()
                if ok and frame is not None:
                    return passed("camera", f"{camera.source} delivers {frame.shape[1]}x{frame.shape[0]} frames")
        finally:
            capture.release()
        return failed(
            "camera", f"{camera.source} opened no frames within {CAMERA_TIMEOUT_S:.0f} s",
            "check the cable and `ls /dev/video*`; for a network camera, open its URL in VLC; set camera.source",
        )  # fmt: skip

    # -- clock -------------------------------------------------------------------------

    def clock(self) -> Check:
        now_s = time.time()
        if now_s < EARLIEST_PLAUSIBLE_S:
            return failed(
                "clock", f"the clock says {time.strftime('%Y-%m-%d', time.gmtime(now_s))}",
                "connect the device to a network with NTP (UDP port 123) and wait a minute",
            )  # fmt: skip
        state = kernel_clock_state()
        if state is None:
            return skipped("clock", "cannot ask the kernel whether NTP synchronised the clock")
        if state == TIME_ERROR:
            return failed(
                "clock", "not synchronised by NTP",
                "check `timedatectl`; allow NTP (UDP port 123) through the store's firewall, or set NTP= in "
                "/etc/systemd/timesyncd.conf to the store's time server",
            )  # fmt: skip
        return passed("clock", "synchronised")

    # -- keys and certificates ---------------------------------------------------------

    def keys(self) -> Check:
        config = self.config
        try:
            DeviceSigner.from_file(config.signing_key_path)
            epoch = KeyRatchet.load(config.pseudonym_key_path).epoch
        except (KeyFileError, KeyStateError) as exc:
            return failed("keys", str(exc), "put the device's provisioning bundle on the boot partition and run its installer again")
        return passed("keys", f"signing key and pseudonym key (epoch {epoch}) readable")

    # -- broker ------------------------------------------------------------------------

    def broker(self) -> Check:
        mqtt_config = self.config.mqtt
        where = f"{mqtt_config.host}:{mqtt_config.port}"
        outcome = try_broker(self.config)
        if outcome is None:
            how = "TLS with this device's certificate" if mqtt_config.tls else "plain MQTT (no TLS)"
            return passed("broker", f"{where} accepted the connection ({how})")
        return failed("broker", f"{where}: {outcome[0]}", outcome[1])

    # -- disk and spool ------------------------------------------------------------------

    def disk(self) -> Check:
        directory = self.config.state_dir
        existing = next((p for p in (directory, *directory.parents) if p.exists()), Path("/"))
        free_bytes = shutil.disk_usage(existing).free
        needed_bytes = self.config.spool.max_bytes + DISK_HEADROOM_BYTES
        if free_bytes < needed_bytes:
            return failed(
                "disk", f"{free_bytes >> 20} MiB free at {existing}, the spool may need {needed_bytes >> 20} MiB",
                "free space (e.g. `apt-get clean`, `journalctl --vacuum-size=50M`) or lower spool.max_bytes",
            )  # fmt: skip
        return passed("disk", f"{free_bytes >> 20} MiB free at {existing}")

    def spool(self) -> Check:
        path = self.config.spool_path
        if not path.exists():
            return passed("spool", f"{path} does not exist yet (created when the agent starts)")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                problems = [row[0] for row in db.execute("PRAGMA quick_check")]
                batches, size_bytes = db.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM batches").fetchone()
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            return failed(
                "spool", f"{path} is damaged ({'; '.join(problems[:2])})",
                "stop the agent and move the file aside; the agent starts a new spool (unsent batches in it are lost)",
            )  # fmt: skip
        evicted = meta.get("evicted_batches", 0)
        detail = f"{batches} batches waiting ({size_bytes >> 10} KiB of {self.config.spool.max_bytes >> 10} KiB)"
        if evicted:
            return failed(
                "spool", f"{detail}; {evicted} batches were evicted because the spool was full",
                "the device was offline longer than the spool holds: check the broker line, or raise spool.max_bytes",
            )  # fmt: skip
        return passed("spool", detail)


def command_output(argv: list[str]) -> str:
    """A command's whole standard output; empty when it cannot run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def try_broker(config: AgentConfig) -> tuple[str, str] | None:
    """Connect like the agent (TLS with the device certificate) and wait for CONNACK; ``(problem, fix)`` or ``None``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    settings = config.mqtt
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"footfall-doctor-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311
    )
    answer: list[object] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        answer.append(reason)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *_args: done.set()
    try:
        if settings.tls:
            client.tls_set(
                ca_certs=str(settings.ca_path) if settings.ca_path else None,
                certfile=str(settings.cert_path) if settings.cert_path else None,
                keyfile=str(settings.key_path) if settings.key_path else None,
            )
        client.connect(settings.host, settings.port, keepalive=10)
    except FileNotFoundError as exc:
        return f"{exc.filename} is missing", "copy the device's provisioning bundle again (certificates and keys)"
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the broker's certificate is not trusted ({exc.verify_message})",
            "mqtt.host must be the name in the broker's certificate, and mqtt.ca_path the fleet CA of this bundle",
        )
    except ssl.SSLError as exc:
        return f"TLS failed ({exc.reason})", "the broker does not accept this device's certificate: provision the device again"
    except ConnectionRefusedError:
        return "connection refused", "the broker is not running or listens on another port: check mqtt.port"
    except OSError as exc:
        return (
            f"unreachable ({exc.strerror or type(exc).__name__})",
            "check the network and DNS, mqtt.host, and that the store's firewall allows outgoing TCP to mqtt.port",
        )
    client.loop_start()
    try:
        done.wait(BROKER_TIMEOUT_S)
    finally:
        client.loop_stop()
        client.disconnect()
    if answer and not getattr(answer[0], "is_failure", True):
        return None
    if answer:
        return f"the broker refused the connection ({answer[0]})", "ask the operator to check the broker's ACL and this device's certificate"
    return (
        "the broker closed the connection during the TLS handshake" if settings.tls else "no answer from the broker",
        "the broker does not accept this device's certificate (another CA?): provision the device again"
        if settings.tls else "check that mqtt.port is the broker's MQTT port",
    )  # fmt: skip


def kernel_clock_state() -> int | None:
    """The kernel's clock state from adjtimex(2) (read only): ``TIME_ERROR`` while unsynchronised."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    libc = ctypes.CDLL(library, use_errno=True)
    timex = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes = 0 (first field) reads only
    state = libc.adjtimex(timex)
    return None if state < 0 else int(state)


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")


def cmd_doctor(config: AgentConfig, args: argparse.Namespace) -> int:
    results = []
    for check in Doctor(config).checks():
        results.append(check)
        if not args.json:
            print(check.line(), flush=True)
    failures = sum(check.status == "FAIL" for check in results)
    if args.json:
        print(json.dumps({"ok": failures == 0, "checks": [asdict(check) for check in results]}, indent=2))
    else:
        print("all checks passed" if not failures else f"{failures} check(s) failed: fix them and run doctor again")
    return 1 if failures else 0
