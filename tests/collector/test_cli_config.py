"""The footfall-collector command line and its configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.cli import main
from collector.config import CollectorConfig, ConfigError, load_collector_config
from shared.signing import DeviceSigner

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "collector.example.yaml"


def test_example_config_is_the_defaults() -> None:
    assert load_collector_config(EXAMPLE, environ={}) == CollectorConfig()


def test_environment_overrides_the_dsn(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("mqtt:\n  shared_group: collectors\n")
    config = load_collector_config(path, environ={"FOOTFALL_DATABASE_DSN": "postgresql://u@db/x"})
    assert config.database.dsn == "postgresql://u@db/x" and config.mqtt.shared_group == "collectors"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt:\n  prot: 1\n", "did you mean 'port'"),
        ("mqtt:\n  receive_maximum: 0\n", "receive_maximum"),
        ("mqtt:\n  shared_group: 'a/b'\n", "shared_group"),
        ("ingest:\n  flush_max_messages: many\n", "whole number"),
        ("analytics:\n  max_busy_share: 0\n", "analytics.max_busy_share"),
        ("analytics:\n  max_pause_s: 0.5\n", "analytics.max_pause_s"),
        ("ingest:\n  check_workers: -1\n", "ingest.check_workers"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_collector_config(path, environ={})


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dsn = ["--dsn", "postgresql://nobody@127.0.0.1:1/none"]
    assert main(["site", "add", "s1", "--time-zone", "Mars/Olympus", *dsn]) == 2
    assert "unknown time zone" in capsys.readouterr().err
    assert main(["device", "enroll", "s1", "d1", "--public-key", "not-a-key", *dsn]) == 2
    assert main(["device", "enroll", "s/1", "d1", f"--public-key={DeviceSigner.generate().public_key_text}", *dsn]) == 2
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("http: [")
    assert main(["migrate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "YAML syntax error" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--dsn", "postgresql://nobody@127.0.0.1:1/none"]) == 1
    assert "database error" in capsys.readouterr().err


def test_site_and_device_commands(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    signer = DeviceSigner.generate()
    other = DeviceSigner.generate()
    assert main(["migrate", "--dsn", pg_dsn]) == 0
    assert main(["migrate", "--dsn", pg_dsn]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["device", "enroll", "s1", "d1", f"--public-key={signer.public_key_text}", "--dsn", pg_dsn]) == 1
    assert "add it first" in capsys.readouterr().err
    assert main(["site", "add", "s1", "--time-zone", "Europe/Prague", "--name", "Main St", "--dsn", pg_dsn]) == 0
    assert main(["device", "enroll", "s1", "d1", f"--public-key={signer.public_key_text}", "--dsn", pg_dsn]) == 0
    assert main(["device", "enroll", "s1", "d1", f"--public-key={signer.public_key_text}", "--dsn", pg_dsn]) == 0
    assert "already enrolled" in capsys.readouterr().out
    assert main(["device", "enroll", "s1", "d1", f"--public-key={other.public_key_text}", "--dsn", pg_dsn]) == 1
    assert "--replace-key" in capsys.readouterr().err
    rotate = ["device", "enroll", "s1", "d1", f"--public-key={other.public_key_text}", "--replace-key"]
    assert main([*rotate, "--dsn", pg_dsn]) == 0
    capsys.readouterr()
    assert main(["site", "list", "--dsn", pg_dsn]) == 0
    assert "Europe/Prague" in capsys.readouterr().out
    assert main(["device", "list", "--dsn", pg_dsn]) == 0
    listing = capsys.readouterr().out
    assert "d1" in listing and "never" in listing
