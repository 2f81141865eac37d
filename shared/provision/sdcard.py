"""Put a device bundle on a freshly flashed SD card and hook the installer into its first boot.

Raspberry Pi OS images start first-boot work in one of two ways, and the
boot partition (FAT, mounted on the installer's PC) shows which:

* **cloud-init** images carry ``user-data`` (``#cloud-config``): the hook is
  a ``runcmd`` entry.
* **firstrun-style** images (Raspberry Pi Imager's customisation) carry
  ``firstrun.sh``, run once by ``systemd.run=`` on the kernel command line
  and deleted by its last lines: the hook goes just before them.

On the device the boot partition is ``/boot/firmware`` (bookworm and later);
older images mount it at ``/boot``, which the hook also tries.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from shared.provision.pki import ProvisionError

BUNDLE_NAME = "footfall"
INSTALL_COMMAND = (
    f"for boot in /boot/firmware /boot; do if [ -f $boot/{BUNDLE_NAME}/footfall-firstboot.sh ]; then "
    f"bash $boot/{BUNDLE_NAME}/footfall-firstboot.sh; break; fi; done"
)
FIRSTRUN_MARKER = "# footfall first-boot installer"


def install_on_boot_partition(bundle: Path, boot: Path) -> str:
    """Copy ``bundle`` to ``boot/footfall`` and add the first-boot hook; return which kind of image it was."""
    if not (bundle / "footfall-firstboot.sh").is_file():
        raise ProvisionError(f"{bundle}: not a device bundle; make one with `footfall provision device`")
    if not boot.is_dir():
        raise ProvisionError(f"{boot}: not a directory; pass the mounted boot partition (it holds config.txt)")
    target = boot / BUNDLE_NAME
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle, target)
    if (boot / "user-data").is_file():
        _hook_cloud_init(boot / "user-data")
        return "cloud-init"
    if (boot / "firstrun.sh").is_file():
        _hook_firstrun(boot / "firstrun.sh")
        return "firstrun"
    raise ProvisionError(
        f"{boot} has neither user-data (cloud-init) nor firstrun.sh (Raspberry Pi Imager): the bundle is copied, but "
        f"nothing will run it — customise the image in Raspberry Pi Imager (user, Wi-Fi, SSH) and run this again, "
        f"or run `sudo bash /boot/firmware/{BUNDLE_NAME}/footfall-firstboot.sh` on the device"
    )


def _hook_cloud_init(user_data: Path) -> None:
    text = user_data.read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    if not isinstance(document, dict):
        raise ProvisionError(f"{user_data}: not a #cloud-config mapping")
    runcmd = document.setdefault("runcmd", [])
    command = ["bash", "-c", INSTALL_COMMAND]
    if command not in runcmd:
        runcmd.append(command)
    user_data.write_text("#cloud-config\n" + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def _hook_firstrun(firstrun: Path) -> None:
    lines = firstrun.read_text(encoding="utf-8").splitlines()
    if FIRSTRUN_MARKER in lines:
        return
    # firstrun.sh ends by deleting itself and cleaning cmdline.txt; run before that.
    at = next((i for i, line in enumerate(lines) if line.startswith("rm -f") and "firstrun.sh" in line), len(lines))
    lines[at:at] = [FIRSTRUN_MARKER, INSTALL_COMMAND]
    firstrun.write_text("\n".join(lines) + "\n", encoding="utf-8")
