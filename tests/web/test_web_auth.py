"""The page and its data endpoints need a credential; the probes do not; without any configured the page is off."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from collector.cli import main
from collector.config import (
    CollectorConfig,
    ConfigError,
    DatabaseConfig,
    HttpConfig,
    MqttConfig,
    WebConfig,
    load_collector_config,
)
from collector.registry import add_site, enroll_device
from collector.service import CollectorService
from collector.state import CollectorState
from collector.web import create_app
from collector.web.auth import Credentials, plain_http_warning
from shared.devstack import Broker
from shared.signing import DeviceSigner
from tests.web.conftest import PASSWORD, TOKEN, USER, Serve

PROTECTED = ("/", "/?site=shop1", "/api/fleet", "/api/sites/shop1", "/static/page.js", "/static/page.css")
PROBES = ("/healthz", "/readyz", "/metrics")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


WRONG = {
    "none": None,
    "wrong token": f"Bearer {TOKEN[:-1]}x",
    "token prefix": f"Bearer {TOKEN[:-1]}",
    "wrong password": basic(USER, PASSWORD + "!"),
    "wrong user": basic("admin", PASSWORD),
    "token as user": basic(TOKEN, ""),
    "other scheme": f"Token {TOKEN}",
    "garbage basic": "Basic ###",
}
RIGHT = {
    "token": f"Bearer {TOKEN}",
    "basic": basic(USER, PASSWORD),
    "token as basic password": basic("anyone", TOKEN),
}


async def get(base: str, path: str, authorization: str | None) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": authorization} if authorization else {}
    async with aiohttp.ClientSession() as session, session.get(base + path, headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


async def test_page_and_data_answer_401_without_the_right_credentials(
    db: asyncpg.Pool, serve: Serve, web_config: WebConfig
) -> None:
    async with db.acquire() as connection:
        await add_site(connection, "shop1", "Europe/Prague", "Test shop")
    base = await serve(web_config)
    for path in PROTECTED:
        for name, authorization in WRONG.items():
            status, headers, _ = await get(base, path, authorization)
            assert status == 401, (path, name)
            assert headers["WWW-Authenticate"].startswith('Basic realm="footfall"'), (path, name)
        for name, authorization in RIGHT.items():
            status, _, body = await get(base, path, authorization)
            assert status == 200, (path, name, body)
    for path in PROBES:
        status, _, _ = await get(base, path, None)
        assert status in (200, 503), path  # readyz is 503: this app has no broker


async def test_unknown_site_is_404_only_with_credentials(db: asyncpg.Pool, serve: Serve, web_config: WebConfig) -> None:
    base = await serve(web_config)
    assert (await get(base, "/api/sites/nowhere", None))[0] == 401
    assert (await get(base, "/api/sites/nowhere", RIGHT["token"]))[0] == 404


async def test_without_credentials_configured_the_page_is_off(serve: Serve) -> None:
    base = await serve(WebConfig())
    for path in PROTECTED:
        status, _, body = await get(base, path, RIGHT["token"])
        assert status == 404 and "web.token_file" in body, path
    assert (await get(base, "/healthz", None))[0] == 200
    assert (await get(base, "/metrics", None))[0] == 200


async def test_token_only_and_basic_only(db: asyncpg.Pool, serve: Serve, web_config: WebConfig) -> None:
    token_only = await serve(WebConfig(token_file=web_config.token_file))
    assert (await get(token_only, "/api/fleet", RIGHT["token"]))[0] == 200
    assert (await get(token_only, "/api/fleet", RIGHT["basic"]))[0] == 401
    basic_only = await serve(WebConfig(user=USER, password_file=web_config.password_file))
    assert (await get(basic_only, "/api/fleet", RIGHT["basic"]))[0] == 200
    assert (await get(basic_only, "/api/fleet", RIGHT["token"]))[0] == 401
    assert (await get(basic_only, "/api/fleet", RIGHT["token as basic password"]))[0] == 401


def test_secret_file_errors_name_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=rf"{missing}: web.token_file: cannot read .* fix: create the file"):
        Credentials.load(WebConfig(token_file=missing))
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match=r"web.token_file: the token is shorter than 16 .* openssl rand"):
        Credentials.load(WebConfig(token_file=short))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=rf"{empty}: web.password_file: the basic-auth password file is empty"):
        Credentials.load(WebConfig(user="u", password_file=empty))
    assert Credentials.load(WebConfig()) is None


def test_config_needs_user_and_password_file_together(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("web:\n  user: manager\n")
    with pytest.raises(ConfigError, match=r"c.yaml: web: web.user and web.password_file must be set together"):
        load_collector_config(path, environ={})
    path.write_text("web:\n  refresh_s: 0\n")
    with pytest.raises(ConfigError, match="web.refresh_s"):
        load_collector_config(path, environ={})


def test_collector_refuses_to_start_with_an_unreadable_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "web-token"
    path = tmp_path / "c.yaml"
    database = "database:\n  dsn: postgresql://nobody@127.0.0.1:1/none\n"
    path.write_text(f"{database}http:\n  port: 0\nweb:\n  token_file: {missing}\n")
    assert main(["run", "--config", str(path)]) == 2
    assert f"{missing}: web.token_file: cannot read the access token" in capsys.readouterr().err


async def test_a_database_away_is_503_not_500(web_config: WebConfig) -> None:
    pool = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:1/none", min_size=0)
    runner = web.AppRunner(create_app(CollectorState(), web_config, lambda: pool))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        assert (await get(base, "/api/fleet", None))[0] == 401
        for path in ("/", "/api/fleet", "/api/sites/shop1"):
            status, _, body = await get(base, path, RIGHT["token"])
            assert status == 503 and "cannot reach its database" in body, path
    finally:
        await runner.cleanup()
        await pool.close()


async def test_a_running_collector_serves_the_page_from_its_own_pool(
    db: asyncpg.Pool, pg_dsn: str, broker: Broker, web_config: WebConfig
) -> None:
    """The service wires its pool into the page: the fleet lists the enrolled device, the probes stay open."""
    async with db.acquire() as connection:
        await add_site(connection, "shop1", "Europe/Prague", "Shop one")
        await enroll_device(connection, "shop1", "pi1", DeviceSigner.generate().public_key_bytes)
    config = CollectorConfig(
        database=DatabaseConfig(dsn=pg_dsn),
        mqtt=MqttConfig(host=broker.host, port=broker.port, version=5 if broker.mqtt5 else "3.1.1"),
        http=HttpConfig(port=0),
        web=web_config,
    )
    async with CollectorService(config, migrate=False) as service:
        base = f"http://127.0.0.1:{service.http_port}"
        assert (await get(base, "/healthz", None))[0] == 200
        assert (await get(base, "/api/fleet", None))[0] == 401
        status, _, body = await get(base, "/api/fleet", RIGHT["token"])
        assert status == 200, body
        assert [(d["site_id"], d["device_id"], d["problems"]) for d in json.loads(body)["devices"]] == [
            ("shop1", "pi1", ["never seen"])
        ]


@pytest.mark.parametrize(
    ("host", "warned"),
    [("127.0.0.1", False), ("::1", False), ("localhost", False), ("0.0.0.0", True), ("", True), ("10.0.0.5", True),
     ("collector.internal", True)],
)  # fmt: skip
def test_a_page_on_a_public_interface_is_warned_about(host: str, warned: bool, web_config: WebConfig) -> None:
    warning = plain_http_warning(web_config, host)
    assert (warning is not None) == warned
    if warning:
        assert "clear text" in warning and "TLS" in warning
    assert plain_http_warning(WebConfig(), host) is None  # the page is off: nothing to leak


async def test_the_collector_logs_the_warning_when_it_listens_publicly(
    pg_dsn: str, broker: Broker, web_config: WebConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = CollectorConfig(
        database=DatabaseConfig(dsn=pg_dsn),
        mqtt=MqttConfig(host=broker.host, port=broker.port, version=5 if broker.mqtt5 else "3.1.1"),
        http=HttpConfig(host="0.0.0.0", port=0),
        web=web_config,
    )
    async with CollectorService(config):
        pass
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "clear text" in r.getMessage()]
