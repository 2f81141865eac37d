"""The agent's configuration (``agent.yaml``), typed, with defaults beside the fields.

Loaded with :func:`shared.config.load_config`, so a mistake is reported as
``agent.yaml: wifi.window_s: expected a whole number, got str 'ten' — fix: …``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edge_agent.batcher import BatchConfig
from edge_agent.camera.config import CameraConfig
from edge_agent.spool import SpoolConfig
from edge_agent.uplink import UplinkConfig
from edge_agent.wifi.hopper import check_channel
from edge_agent.wifi.linker import LinkerConfig
from edge_agent.wifi.pseudonym import parse_mac
from shared.config import load_config
from shared.topics import check_id


#: Key periods allowed: at least an hour (shorter breaks visits apart), at most a year.
MIN_KEY_PERIOD_S, MAX_KEY_PERIOD_S = 3_600, 366 * 86_400


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
    period_s: int = field(
        default=86_400,
        metadata={
            "help": "key period in seconds: 86400 (daily) or longer, e.g. 2592000 (30 days) for returning visitors; "
            "keygen writes it into the key file and the agent refuses a key file with another period"
        },
    )

    def __post_init__(self) -> None:
        if not MIN_KEY_PERIOD_S <= self.period_s <= MAX_KEY_PERIOD_S:
            raise ValueError(f"pseudonym.period_s must be within {MIN_KEY_PERIOD_S}..{MAX_KEY_PERIOD_S} seconds")
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
    interface: str | None = field(
        default=None, metadata={"help": "the monitor-mode interface to capture on, e.g. wlan1mon"}
    )
    channels: list[int] = field(
        default_factory=lambda: [1, 6, 11],
        metadata={"help": "channels to hop through, e.g. [1, 6, 11, 36, 149]; one channel = no hopping"},
    )
    dwell_s: float = field(default=0.5, metadata={"help": "seconds on each channel before hopping on"})
    visitor_band_dbm: int = field(
        default=-65, metadata={"help": "weakest RSSI of the visitor band, dBm; below it a device is a passer-by"}
    )
    passersby: Literal["pseudonyms", "counts"] = field(
        default="pseudonyms",
        metadata={"help": "'counts': devices that stay below visitor_band_dbm are sent as counts, without pseudonyms"},
    )
    passersby_bucket_s: int = field(default=300, metadata={"help": "bucket of the passer-by counts, seconds"})
    linker: LinkerConfig = field(default_factory=LinkerConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.window_s <= 3_600:
            raise ValueError("wifi.window_s must be within 1..3600 seconds")
        if self.replay_speed is not None and self.replay_speed <= 0:
            raise ValueError("wifi.replay_speed must be positive, or null for as fast as possible")
        if not self.channels:
            raise ValueError("wifi.channels must name at least one channel")
        for channel in self.channels:
            check_channel(channel)
        if not 0.05 <= self.dwell_s <= 60:
            raise ValueError("wifi.dwell_s must be within 0.05..60 seconds")
        if not -120 <= self.visitor_band_dbm <= 0:
            raise ValueError("wifi.visitor_band_dbm must be within -120..0 dBm")
        if not self.window_s <= self.passersby_bucket_s <= 86_400 or self.passersby_bucket_s % self.window_s:
            raise ValueError("wifi.passersby_bucket_s must be a multiple of wifi.window_s, at most 86400")


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
