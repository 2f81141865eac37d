"""The agent's configuration (``agent.yaml``), typed, with defaults beside the fields.

Loaded with :func:`shared.config.load_config`, so a mistake is reported as
``agent.yaml: wifi.window_s: expected a whole number, got str 'ten' — fix: …``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.batcher import BatchConfig
from edge_agent.camera.config import CameraConfig
from edge_agent.spool import SpoolConfig
from edge_agent.uplink import UplinkConfig
from edge_agent.wifi.pseudonym import parse_mac
from shared.config import load_config
from shared.topics import check_id


@dataclass(frozen=True)
class PseudonymConfig:
    key_file: Path | None = field(
        default=None,
        metadata={"help": "path of the key group's ratchet state; default <state_dir>/pseudonym.key"},
    )
    opt_out_macs: list[str] = field(
        default_factory=list,
        metadata={"help": "MAC addresses (aa:bb:cc:dd:ee:ff) whose frames are dropped on the device"},
    )

    def __post_init__(self) -> None:
        for index, text in enumerate(self.opt_out_macs):
            try:
                parse_mac(text)
            except ValueError:
                raise ValueError(f"pseudonym.opt_out_macs[{index}] is not a MAC address like aa:bb:cc:dd:ee:ff") from None

    def opt_out_set(self) -> frozenset[bytes]:
        return frozenset(parse_mac(text) for text in self.opt_out_macs)


@dataclass(frozen=True)
class WifiConfig:
    enabled: bool = True
    window_s: int = field(default=10, metadata={"help": "sighting window in seconds, e.g. 10"})
    replay_file: Path | None = field(
        default=None, metadata={"help": "a pcap/pcapng file to replay instead of live capture"}
    )
    replay_speed: float | None = field(
        default=1.0, metadata={"help": "1.0 = the capture's own pace, 10 = ten times faster, null = as fast as possible"}
    )

    def __post_init__(self) -> None:
        if not 1 <= self.window_s <= 3_600:
            raise ValueError("wifi.window_s must be within 1..3600 seconds")
        if self.replay_speed is not None and self.replay_speed <= 0:
            raise ValueError("wifi.replay_speed must be positive, or null for as fast as possible")


@dataclass(frozen=True)
class AgentConfig:
    site_id: str = field(metadata={"help": "the site this device belongs to, e.g. store-042"})
    device_id: str = field(metadata={"help": "this device's id, e.g. door-1"})
    state_dir: Path = field(
        default=Path("/var/lib/footfall"), metadata={"help": "a writable directory for the spool and key state"}
    )
    signing_key: Path | None = field(
        default=None, metadata={"help": "the device's Ed25519 key (PEM); default <state_dir>/device.key"}
    )
    log_level: str = "INFO"
    pseudonym: PseudonymConfig = field(default_factory=PseudonymConfig)
    wifi: WifiConfig = field(default_factory=WifiConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    mqtt: UplinkConfig = field(default_factory=UplinkConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)

    def __post_init__(self) -> None:
        check_id(self.site_id, "site_id")
        check_id(self.device_id, "device_id")

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key or self.state_dir / "device.key"

    @property
    def pseudonym_key_path(self) -> Path:
        return self.pseudonym.key_file or self.state_dir / "pseudonym.key"

    @property
    def spool_path(self) -> Path:
        return self.spool.path or self.state_dir / "spool.sqlite3"


def load_agent_config(path: Path | str) -> AgentConfig:
    return load_config(path, AgentConfig)
