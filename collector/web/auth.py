"""Who may read the page: a token or a basic-auth user, compared in constant time.

Default deny: every path but the probes needs a credential, so a route added
later is never open by accident. Without any credential configured the page is
off (404 saying how to turn it on), never open — the collector may listen on a
public interface for Prometheus. Basic auth sends the password with every
request, so serve the page behind TLS termination (docs/web.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from collector.config import WebConfig
from shared.config import ConfigError

MIN_TOKEN_CHARS = 16
CHALLENGE = 'Basic realm="footfall", charset="UTF-8"'
DISABLED_TEXT = (
    "The footfall status page is off: no credential is configured. "
    "Set web.token_file, or web.user and web.password_file, in the collector config (docs/web.md).\n"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Credentials:
    """The secrets the page accepts; at least one of ``token`` and ``user``/``password``."""

    token: bytes | None = None
    user: bytes | None = None
    password: bytes | None = None

    @classmethod
    def load(cls, config: WebConfig) -> Credentials | None:
        """Read the configured secret files; ``None`` when the page is not configured (off)."""
        if not config.enabled:
            return None
        token = password = None
        if config.token_file is not None:
            token = _read_secret(config.token_file, "web.token_file", "the access token")
            if len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(
                    str(config.token_file), "web.token_file", f"the token is shorter than {MIN_TOKEN_CHARS} characters",
                    "write a long random one: openssl rand -hex 32 > FILE",
                )  # fmt: skip
        if config.password_file is not None:
            password = _read_secret(config.password_file, "web.password_file", "the basic-auth password")
        user = config.user.encode() if config.user is not None else None
        return cls(token=token, user=user, password=password)

    def accept(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries one of our secrets.

        The token works as ``Bearer TOKEN`` (scripts) and as the password of
        basic auth with any user name (a browser's login prompt).
        """
        scheme, _, value = (authorization or "").strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return self.token is not None and hmac.compare_digest(value.strip().encode(), self.token)
        if scheme != "basic":
            return False
        try:
            user, separator, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        if not separator:
            return False
        token_ok = self.token is not None and hmac.compare_digest(password, self.token)
        # Both comparisons always run (``&``, not ``and``): the time does not tell which part was wrong.
        user_ok = self.user is not None and self.password is not None
        user_ok = user_ok and (hmac.compare_digest(user, self.user) & hmac.compare_digest(password, self.password))
        return token_ok or user_ok


def plain_http_warning(config: WebConfig, host: str) -> str | None:
    """What to tell the operator when the page's credentials would cross a network in clear text, else None.

    The collector speaks plain HTTP; TLS belongs to a proxy in front. Bound to
    anything but loopback with the page on, a token or password reaches the
    collector unencrypted from wherever the request came from.
    """
    if not config.enabled or _is_loopback(host):
        return None
    return (
        f"web_page=on http.host={host or '*'} is not loopback: the page's credentials cross the network in clear text;"
        " bind http.host to 127.0.0.1 and serve the page through a TLS-terminating proxy (docs/web.md)"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, or "" (every interface)


def _read_secret(path: Path, key: str, what: str) -> bytes:
    try:
        secret = path.read_bytes().rstrip(b"\r\n")
    except OSError as error:
        raise ConfigError(
            str(path), key, f"cannot read {what} ({error.strerror})",
            f"create the file (readable by the collector's user only) or remove {key}",
        ) from None  # fmt: skip
    if not secret:
        raise ConfigError(str(path), key, f"{what} file is empty", f"put {what} in the file or remove {key}")
    return secret


def auth_middleware(credentials: Credentials | None, public_paths: Collection[str]) -> Middleware:
    """Let ``public_paths`` through; everything else needs ``credentials`` (401), or is off without them (404)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public_paths:
            return await handler(request)
        if credentials is None:
            return web.Response(status=404, text=DISABLED_TEXT)
        if not credentials.accept(request.headers.get("Authorization")):
            return web.Response(
                status=401, text="401: credentials needed\n", headers={"WWW-Authenticate": CHALLENGE}
            )
        return await handler(request)

    return check
