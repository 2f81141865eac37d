"""Web fixtures on top of the shared harness: the collector's HTTP app on a real, migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from collector.config import WebConfig
from collector.state import CollectorState
from collector.web import create_app

TOKEN = "test-token-0123456789abcdef"
USER, PASSWORD = "manager", "correct horse battery staple"

Serve = Callable[[WebConfig], Awaitable[str]]


@pytest.fixture
def web_config(tmp_path: Path) -> WebConfig:
    """Both kinds of credential configured, fast refreshes."""
    token_file, password_file = tmp_path / "web-token", tmp_path / "web-password"
    token_file.write_text(TOKEN + "\n")
    password_file.write_text(PASSWORD)
    return WebConfig(token_file=token_file, user=USER, password_file=password_file, refresh_s=0.5)


@pytest.fixture
async def serve(db: asyncpg.Pool) -> AsyncIterator[Serve]:
    """Starts the collector's HTTP app with a given web config on a free port; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(config: WebConfig) -> str:
        runner = web.AppRunner(create_app(CollectorState(), config, lambda: db), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()
