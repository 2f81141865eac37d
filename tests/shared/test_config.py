"""Config files: typed loading and errors that name the file, the key and the fix."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from collector.config import load_collector_config
from edge_agent.config import PseudonymConfig, WifiConfig, load_agent_config
from edge_agent.wifi.linker import LinkerConfig
from shared.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Inner:
    port: int = 1883
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str = field(metadata={"help": "a short name, e.g. door-1"})
    ratio: float = 1.0
    tags: list[str] = field(default_factory=list)
    path: Path | None = None
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.ratio <= 0:
            raise ValueError("ratio must be positive")


def _load(tmp_path: Path, text: str) -> Outer:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return load_config(path, Outer)


def test_loads_nested_typed_values(tmp_path):
    loaded = _load(tmp_path, "name: d1\nratio: 2\ntags: [a, b]\npath: /tmp/x\ninner: {port: 8883, mode: b}\n")
    assert loaded == Outer("d1", 2.0, ["a", "b"], Path("/tmp/x"), Inner(8883, "b"))
    assert isinstance(loaded.ratio, float)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("ratio: 1", "name", "required key is missing — fix: a short name"),
        ("name: d1\ninner: {prot: 1}", "inner.prot", "unknown key — fix: did you mean 'port'?"),
        ("name: d1\ninner: {port: '1883'}", "inner.port", "expected a whole number, got str '1883'"),
        ("name: d1\ninner: {port: true}", "inner.port", "expected a whole number, got bool True"),
        ("name: d1\ninner: {mode: c}", "inner.mode", "use one of 'a', 'b'"),
        ("name: d1\ntags: a", "tags", "expected a list"),
        ("name: d1\nratio: -1", "(top level)", "ratio must be positive"),
        ("name: d1\ninner: 5", "inner", "expected a mapping"),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path, text, key, expected):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'x.yaml'}: {key}: ")
    assert expected in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"x.yaml: YAML syntax error at line 3, column 6"):
        _load(tmp_path, "name: d1\ninner: {port: 1\n  bad")


def test_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="file not found — fix: pass the right path with --config"):
        load_config(tmp_path / "absent.yaml", Outer)


def test_example_configs_load_and_stay_true_to_the_code():
    agent = load_agent_config(REPO / "configs" / "agent.example.yaml")
    assert (agent.site_id, agent.device_id) == ("store-042", "door-1")
    collector = load_collector_config(REPO / "configs" / "collector.example.yaml", environ={})
    assert collector.mqtt.receive_maximum >= 1


def test_the_example_documents_every_wifi_and_pseudonym_key():
    document = yaml.safe_load((REPO / "configs" / "agent.example.yaml").read_text())

    def keys(schema: type, prefix: str) -> set[str]:
        return {prefix + f.name for f in dataclasses.fields(schema)}

    def documented(doc: dict, prefix: str) -> set[str]:
        found = set()
        for key, value in doc.items():
            found.add(prefix + key)
            if isinstance(value, dict):
                found |= documented(value, f"{prefix}{key}.")
        return found

    expected = keys(WifiConfig, "wifi.") | keys(LinkerConfig, "wifi.linker.") | keys(PseudonymConfig, "pseudonym.")
    present = documented(document, "") | {"pseudonym.key_file"}  # commented out: its default is derived
    assert expected <= present, sorted(expected - present)


def test_agent_config_rejects_bad_ids_and_macs(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text("site_id: 'store 42'\ndevice_id: d1\n")
    with pytest.raises(ConfigError, match="site_id 'store 42' is not valid"):
        load_agent_config(path)
    path.write_text("site_id: s1\ndevice_id: d1\npseudonym: {opt_out_macs: ['not-a-mac']}\n")
    with pytest.raises(ConfigError, match=r"opt_out_macs\[0\] is not a MAC address"):
        load_agent_config(path)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("wifi: {channels: [1, 15]}", "15 is not a 2.4 GHz"),
        ("wifi: {channels: []}", "at least one channel"),
        ("wifi: {passersby: hide}", "use one of 'pseudonyms', 'counts'"),
        ("wifi: {passersby_bucket_s: 305}", "multiple of wifi.window_s"),
        ("wifi: {linker: {max_gap_s: 3600}}", "forget_after_s must be at least"),
        ("pseudonym: {period_s: 60}", "period_s must be within"),
    ],
)
def test_agent_wifi_and_privacy_settings_are_checked_with_the_fix(tmp_path, yaml_text, message):
    path = tmp_path / "agent.yaml"
    path.write_text(f"site_id: s1\ndevice_id: d1\n{yaml_text}\n")
    with pytest.raises(ConfigError, match=message):
        load_agent_config(path)
