"""The first-boot installer, run for real against a temporary root directory.

A bundle made by `footfall provision device` is put on a stand-in boot
partition by `footfall provision sd-card`, then the installer runs with
`--root`: files, owners and modes are checked, secrets must have left the
boot partition, and a second run must change nothing at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from edge_agent.config import load_agent_config
from shared.cli import main as footfall_cli
from shared.provision.sdcard import INSTALL_COMMAND

SITE, DEVICE = "store-7", "door-1"
SECRETS = ("device.key", "mqtt-client.key", "pseudonym.key")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("systemd-sysusers", "systemctl")),
    reason="the installer sets owners (needs root) and uses systemd-sysusers and systemctl --root (apt-get install systemd)",
)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    fleet = tmp_path / "fleet"
    for argv in (
        ["ca"],
        ["key-group", SITE],
        ["device", SITE, DEVICE, "--key-group", SITE, "--broker-host", "mqtt.example.com"],
    ):
        assert footfall_cli(["provision", "--fleet", str(fleet), *argv]) == 0
    return fleet / "devices" / SITE / DEVICE


def sd_card(tmp_path: Path, hook_file: str, content: str) -> Path:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / hook_file).write_text(content)
    argv = ["provision", "--fleet", str(tmp_path / "fleet"), "sd-card", SITE, DEVICE, "--boot", str(boot)]
    assert footfall_cli(argv) == 0
    return boot


def run_installer(boot: Path, root: Path) -> str:
    result = subprocess.run(
        ["bash", str(boot / "footfall" / "footfall-firstboot.sh"), "--root", str(root), "--no-pip"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def snapshot(*trees: Path) -> dict[str, tuple]:
    """Everything that could change: type, mode, owner, content (and a link's target), per path."""
    state: dict[str, tuple] = {}
    for tree in trees:
        for path in [tree, *sorted(tree.rglob("*"))]:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                detail: object = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                detail = (hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mtime_ns)
            else:
                detail = None
            state[str(path)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, detail)
    return state


def owner_mode(path: Path) -> tuple[int, int, str]:
    info = path.stat()
    return info.st_uid, info.st_gid, oct(stat.S_IMODE(info.st_mode))


def test_installs_moves_secrets_off_the_boot_partition_and_is_idempotent(bundle: Path, tmp_path: Path) -> None:
    secrets = {name: (bundle / "secrets" / name).read_bytes() for name in SECRETS}
    boot = sd_card(tmp_path, "firstrun.sh", "#!/bin/bash\nset +e\necho customise\nrm -f /boot/firstrun.sh\nexit 0\n")
    firstrun = (boot / "firstrun.sh").read_text().splitlines()
    assert firstrun.index(INSTALL_COMMAND) < firstrun.index("rm -f /boot/firstrun.sh")

    root = tmp_path / "root"
    root.mkdir()
    first = run_installer(boot, root)
    assert "done: footfall-agent is enabled" in first

    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()}
    agent_uid, agent_gid = int(passwd["footfall"][2]), int(passwd["footfall"][3])
    assert agent_uid != 0
    etc, state = root / "etc" / "footfall", root / "var" / "lib" / "footfall"
    expected = {
        etc: (0, 0, "0o755"),
        etc / "agent.yaml": (0, 0, "0o644"),
        etc / "fleet-ca.crt": (0, 0, "0o644"),
        etc / "mqtt-client.crt": (0, 0, "0o644"),
        etc / "credentials": (0, 0, "0o700"),
        etc / "credentials" / "device.key": (0, 0, "0o600"),
        etc / "credentials" / "mqtt-client.key": (0, 0, "0o600"),
        state: (agent_uid, agent_gid, "0o700"),
        state / "pseudonym.key": (agent_uid, agent_gid, "0o600"),
        root / "etc" / "systemd" / "system" / "footfall-agent.service": (0, 0, "0o644"),
    }
    assert {path: owner_mode(path) for path in expected} == expected
    assert (etc / "credentials" / "device.key").read_bytes() == secrets["device.key"]
    assert (etc / "credentials" / "mqtt-client.key").read_bytes() == secrets["mqtt-client.key"]
    assert (state / "pseudonym.key").read_bytes() == secrets["pseudonym.key"]

    # No secret is left on the FAT partition, in any form.
    left = {path.name for path in (boot / "footfall").rglob("*")}
    assert not left & {*SECRETS, "secrets"}
    assert not any(content in path.read_bytes() for path in boot.rglob("*") if path.is_file() for content in secrets.values())

    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "footfall-agent.service"
    assert os.readlink(wants) == "/etc/systemd/system/footfall-agent.service"
    assert (root / "opt" / "footfall" / "venv" / "bin" / "python").exists()
    assert "footfall" in (root / "etc" / "group").read_text().split("video:", 1)[1].splitlines()[0]

    config = load_agent_config(etc / "agent.yaml")
    for installed in (config.signing_key_path, config.pseudonym_key_path, config.mqtt.key_path, config.mqtt.cert_path):
        assert (root / str(installed).lstrip("/")).is_file(), installed

    before = snapshot(root, boot)
    second = run_installer(boot, root)
    assert snapshot(root, boot) == before
    assert [line for line in second.splitlines() if not line.startswith("footfall-firstboot: done")] == []


def test_the_installer_never_rolls_the_pseudonym_key_back(bundle: Path, tmp_path: Path) -> None:
    boot = sd_card(tmp_path, "firstrun.sh", "#!/bin/bash\nrm -f /boot/firstrun.sh\n")
    root = tmp_path / "root"
    root.mkdir()
    run_installer(boot, root)
    ratcheted = b'{"epoch": 99999, "period_s": 86400, "key": "ratcheted"}'
    (root / "var" / "lib" / "footfall" / "pseudonym.key").write_bytes(ratcheted)
    # The installer runs again with a fresh copy of the bundle on the card (e.g. re-flashed boot files).
    shutil.copytree(bundle / "secrets", boot / "footfall" / "secrets")
    output = run_installer(boot, root)
    assert "kept" in output
    assert (root / "var" / "lib" / "footfall" / "pseudonym.key").read_bytes() == ratcheted
    assert not (boot / "footfall" / "secrets").exists()


def test_cloud_init_images_get_one_runcmd(bundle: Path, tmp_path: Path) -> None:
    boot = sd_card(tmp_path, "user-data", "#cloud-config\nhostname: pi\nruncmd:\n  - [echo, hello]\n")
    argv = ["provision", "--fleet", str(tmp_path / "fleet"), "sd-card", SITE, DEVICE, "--boot", str(boot)]
    assert footfall_cli(argv) == 0  # twice: still one hook
    text = (boot / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert document["hostname"] == "pi"
    assert document["runcmd"] == [["echo", "hello"], ["bash", "-c", INSTALL_COMMAND]]
