"""Configuration for the deployed services: the DSN as a credential file, MQTT TLS keys, enrollment records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.cli import main as collector_cli
from collector.config import DSN_FILE_ENVIRONMENT_VARIABLE, load_collector_config
from shared.config import ConfigError
from shared.signing import DeviceSigner


def test_the_dsn_comes_from_a_credential_file(tmp_path: Path) -> None:
    dsn_file = tmp_path / "database-dsn"
    dsn_file.write_text("postgresql://footfall:secret@db:5432/footfall\n")
    config = load_collector_config(None, {DSN_FILE_ENVIRONMENT_VARIABLE: str(dsn_file)})
    assert config.database.dsn == "postgresql://footfall:secret@db:5432/footfall"
    override = load_collector_config(
        None, {DSN_FILE_ENVIRONMENT_VARIABLE: str(dsn_file), "FOOTFALL_DATABASE_DSN": "postgresql://other@x/y"}
    )
    assert override.database.dsn == "postgresql://other@x/y"


def test_a_missing_credential_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_collector_config(None, {DSN_FILE_ENVIRONMENT_VARIABLE: str(tmp_path / "nope")})
    assert str(error.value).startswith(f"{tmp_path / 'nope'}: cannot read the database DSN")
    assert "fix:" in str(error.value)


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ("{tls: true, cert_path: /c.crt}", "mqtt.cert_path and mqtt.key_path must be set together"),
        ("{ca_path: /ca.crt}", "set tls: true"),
    ],
)
def test_mqtt_tls_mistakes_name_the_key(tmp_path: Path, mqtt: str, message: str) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(f"mqtt: {mqtt}\n")
    with pytest.raises(ConfigError) as error:
        load_collector_config(path, {})
    assert str(error.value).startswith(f"{path}: mqtt:") and message in str(error.value)


def record(tmp_path: Path, **fields: str) -> Path:
    path = tmp_path / "store-1.d1.json"
    base = {"site_id": "store-1", "device_id": "d1", "public_key": DeviceSigner.generate().public_key_text}
    path.write_text(json.dumps({**base, **fields}))
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["store-1", "d1"], "needs SITE_ID DEVICE_ID --public-key=KEY, or --from-record FILE"),
        (["store-1", "d9", "--from-record", "{record}"], "is for store-1/d1, not store-1/d9"),
        (["--from-record", "{record}", "--public-key", "x"], "either --public-key or --from-record"),
        (["--from-record", "{missing}"], "not an enrollment record"),
    ],
)
def test_enrollment_record_mistakes_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    paths = {"record": str(record(tmp_path)), "missing": str(tmp_path / "missing.json")}
    argv = [part.format(**paths) for part in argv]
    assert collector_cli(["device", "enroll", *argv, "--dsn", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    assert message in capsys.readouterr().err
