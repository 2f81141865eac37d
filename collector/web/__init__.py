"""The collector's HTTP server: open probes for orchestrators, and the protected status and footfall page.

    probes.py   /healthz /readyz /metrics — no credentials
    auth.py     token or basic auth for everything else; the page is off without one
    page.py     the page's routes → queries.py (SQL) → JSON; html.py the shell; static/ draws it
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg
from aiohttp import web

from collector.config import WebConfig
from collector.state import CollectorState
from collector.web.auth import Credentials, auth_middleware
from collector.web.page import PageContext, add_page_routes
from collector.web.probes import PATHS as PROBE_PATHS
from collector.web.probes import add_probe_routes, render_metrics

log = logging.getLogger(__name__)


def create_app(
    state: CollectorState,
    config: WebConfig | None = None,
    pool: Callable[[], asyncpg.Pool | None] = lambda: None,
) -> web.Application:
    """The app; raises :class:`~shared.config.ConfigError` when a configured secret file cannot be used."""
    config = config or WebConfig()
    credentials = Credentials.load(config)
    if credentials is None:
        log.info("web_page=off reason=no_credential (set web.token_file, or web.user and web.password_file)")
    else:
        log.info("web_page=on token=%s basic_auth=%s", credentials.token is not None, credentials.user is not None)
    app = web.Application(middlewares=[auth_middleware(credentials, PROBE_PATHS)])
    add_probe_routes(app, state)
    add_page_routes(app, PageContext(config, pool))
    return app


__all__ = ["create_app", "render_metrics"]
