"""The status and footfall page: an HTML shell, two JSON endpoints and the static files that draw them.

    GET /                       the page (the site picked by ?site=, else the first)
    GET /api/fleet              every device with its health, problems first
    GET /api/sites/{site_id}    one site's footfall: today against last week, hours, zones, dwell, flows
    GET /static/{file}          page.js and page.css (package data)

Handlers open a read-only transaction, call collector/web/queries.py and
serialise; page.js draws from the JSON and fetches it again every
``web.refresh_s``. Credentials are checked before any of this (auth.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
from aiohttp import web

from collector.config import WebConfig
from collector.db.writer import TRANSIENT_ERRORS
from collector.web import queries
from collector.web.html import render_page

STATIC_DIR = Path(__file__).with_name("static")
DATABASE_AWAY = "the collector cannot reach its database right now; try again shortly\n"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageContext:
    config: WebConfig
    #: The service's pool, which exists only once the database is reachable (HTTP starts first).
    pool: Callable[[], asyncpg.Pool | None]


PAGE_KEY = web.AppKey("page", PageContext)


def add_page_routes(app: web.Application, context: PageContext) -> None:
    app[PAGE_KEY] = context
    app.router.add_get("/", page)
    app.router.add_get("/api/fleet", fleet)
    app.router.add_get("/api/sites/{site_id}", site)
    app.router.add_static("/static/", STATIC_DIR)


@asynccontextmanager
async def _read_only(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """A read-only transaction; 503 (the page says so and retries) while the database is away."""
    pool = request.app[PAGE_KEY].pool()
    if pool is None:
        raise web.HTTPServiceUnavailable(text=DATABASE_AWAY)
    try:
        async with pool.acquire() as connection, connection.transaction(readonly=True):
            yield connection
    except TRANSIENT_ERRORS as error:
        log.warning("web_page=database_error error=%s", type(error).__name__)
        raise web.HTTPServiceUnavailable(text=DATABASE_AWAY) from None


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def page(request: web.Request) -> web.Response:
    async with _read_only(request) as connection:
        sites = await queries.sites(connection)
    known = [s["site_id"] for s in sites]
    wanted = request.query.get("site")
    selected = wanted if wanted in known else (known[0] if known else None)
    html = render_page(sites, selected, request.app[PAGE_KEY].config.refresh_s)
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})


async def fleet(request: web.Request) -> web.Response:
    async with _read_only(request) as connection:
        data = await queries.fleet(connection, _now(), request.app[PAGE_KEY].config.offline_after_s)
    return _json(data)


async def site(request: web.Request) -> web.Response:
    site_id = request.match_info["site_id"]
    async with _read_only(request) as connection:
        window = await queries.site_window(connection, site_id, _now())
        if window is None:
            raise web.HTTPNotFound(text=f"no site {site_id!r}\n")
        data = await queries.site_footfall(connection, window)
    return _json(data)


def _json(data: object) -> web.Response:
    return web.json_response(data, headers={"Cache-Control": "no-store"})
