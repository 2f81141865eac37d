"""`footfall-agent doctor` on this machine: no Wi-Fi adapter, no camera, a real TLS broker.

Each failing check must say what is wrong and how to fix it on one line;
the checks that can pass here (keys, broker TLS handshake with the device
certificate, disk, spool) must pass.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path


from edge_agent.config import load_agent_config
from edge_agent.doctor import Doctor
from edge_agent.spool import Spool
from edge_agent.wifi.hopper import CommandResult
from shared.devstack import MosquittoBroker
from tests.deploy.deploy_helpers import SITE


def device_config(tmp_path: Path, fleet: Path, broker: MosquittoBroker, device: str = "d1", **extra: str) -> Path:
    """The bundle's agent.yaml with the bundle's own file locations (not yet installed) and the test broker."""
    bundle = fleet / "devices" / SITE / device
    text = (bundle / "agent.yaml").read_text()
    for installed, here in (
        ("/etc/footfall/credentials/", f"{bundle}/secrets/"),
        ("/var/lib/footfall/pseudonym.key", f"{bundle}/secrets/pseudonym.key"),
        ("/var/lib/footfall", str(tmp_path / "state")),
        ("/etc/footfall/", f"{bundle}/"),
        ("interface: wlan1", "interface: wlan-absent0"),
        ("port: 8883", f"port: {broker.port}"),
    ):
        text = text.replace(installed, here)
    text += "".join(f"{key}\n" for key in extra.values())
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def doctor(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "--config", str(config), "doctor", *options],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def lines_by_check(output: str) -> dict[str, str]:
    return {line.split()[1]: line for line in output.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")}


def test_doctor_here_fails_wifi_with_its_fix_and_passes_what_can_pass(
    tmp_path: Path, fleet: Path, tls_broker: MosquittoBroker
) -> None:
    result = doctor(device_config(tmp_path, fleet, tls_broker))
    assert result.returncode == 1, result.stdout + result.stderr
    checks = lines_by_check(result.stdout)
    assert checks["wifi-interface"] == (
        "FAIL  wifi-interface  wlan-absent0: missing — fix: Wi-Fi interface wlan-absent0 does not exist: "
        "plug the USB Wi-Fi adapter in, or set wifi.interface to one listed by `ip link`"
    )
    assert checks["channel-hopping"].startswith("SKIP")
    assert checks["camera"].startswith("SKIP")
    for name in ("keys", "broker", "disk", "spool"):
        assert checks[name].startswith("PASS"), checks[name]
    assert "accepted the connection (TLS with this device's certificate)" in checks["broker"]
    for line in checks.values():
        assert line.startswith("FAIL") == (" — fix: " in line), line
    assert result.stdout.rstrip().endswith("fix them and run doctor again")


def test_a_certificate_the_broker_refuses_is_a_failed_check_with_a_fix(
    tmp_path: Path, fleet: Path, foreign_fleet: Path, tls_broker: MosquittoBroker
) -> None:
    config = device_config(tmp_path, fleet, tls_broker)
    foreign = foreign_fleet / "devices" / SITE / "d1"
    ours = fleet / "devices" / SITE / "d1"
    config.write_text(
        config.read_text()
        .replace(f"{ours}/mqtt-client.crt", f"{foreign}/mqtt-client.crt")
        .replace(f"{ours}/secrets/mqtt-client.key", f"{foreign}/secrets/mqtt-client.key")
    )
    broker = lines_by_check(doctor(config).stdout)["broker"]
    assert broker.startswith("FAIL") and "provision the device again" in broker


def test_json_output_for_installer_scripts(tmp_path: Path, fleet: Path, tls_broker: MosquittoBroker) -> None:
    result = doctor(device_config(tmp_path, fleet, tls_broker), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["ok"] is False
    assert {check["name"]: check["status"] for check in report["checks"]}["broker"] == "PASS"


def test_spool_evictions_damage_and_a_small_disk_are_reported(tmp_path: Path, fleet: Path, tls_broker: MosquittoBroker) -> None:
    config = load_agent_config(device_config(tmp_path, fleet, tls_broker))
    spool = Spool(config.spool_path, max_bytes=1 << 20)
    for _ in range(4):
        spool.append(lambda _seq, _floor: b"x" * 400_000, events=1)
    spool.close()
    check = Doctor(config).spool()
    assert check.status == "FAIL" and "evicted" in check.detail and "spool.max_bytes" in check.fix

    config.spool_path.write_bytes(b"this is not SQLite" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{config.spool_path}{suffix}").unlink(missing_ok=True)
    check = Doctor(config).spool()
    assert check.status == "FAIL" and "damaged" in check.detail

    huge = dataclasses.replace(config, spool=dataclasses.replace(config.spool, max_bytes=1 << 50))
    check = Doctor(huge).disk()
    assert check.status == "FAIL" and "lower spool.max_bytes" in check.fix


def test_channels_the_driver_refuses_are_named(tmp_path: Path, fleet: Path, tls_broker: MosquittoBroker) -> None:
    """A monitor interface as sysfs shows it, and `iw` refusing channel 165 (no such adapter here)."""
    config = load_agent_config(device_config(tmp_path, fleet, tls_broker))
    interface = tmp_path / "sys" / "wlan-absent0"
    interface.mkdir(parents=True)
    (interface / "type").write_text("803\n")  # radiotap: monitor mode
    (interface / "flags").write_text("0x1003\n")  # up
    config = dataclasses.replace(config, wifi=dataclasses.replace(config.wifi, channels=[1, 6, 165]))

    def iw(argv: list[str]) -> CommandResult:
        return CommandResult(1, "command failed: Invalid argument (-22)") if argv[-1] == "165" else CommandResult(0, "")

    checks = {check.name: check for check in Doctor(config, run=iw, sysfs_net=tmp_path / "sys").wifi()}
    assert checks["wifi-interface"].status == "PASS"
    assert checks["channel-hopping"].status == "FAIL"
    assert checks["channel-hopping"].detail == "refused 165: command failed: Invalid argument (-22)"

