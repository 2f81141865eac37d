"""A headless Chromium for tests and benches, driven over the DevTools protocol with aiohttp.

The status page is drawn by JavaScript, so only a real browser shows that it
renders. Chromium (Debian's ``chromium`` package) is started with a fresh
profile and ``--remote-debugging-port=0``; the port it picked is read from the
``DevToolsActivePort`` file it writes. Speaking the protocol needs nothing but
aiohttp's websocket client, already a collector dependency.

    async with HeadlessChromium() as browser:
        page = await browser.new_page(headers={"Authorization": "Bearer …"})
        await page.navigate("http://127.0.0.1:8080/")
        await page.wait_for("document.body.dataset.renders >= 1")
        numbers = await page.evaluate("[...document.querySelectorAll('[data-value]')].map(e => e.dataset.value)")
        png = await page.screenshot()
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((path for name in EXECUTABLES if (path := shutil.which(name))), None)


class BrowserError(Exception):
    """Chromium did not start, or a DevTools command failed."""


class HeadlessChromium:
    """One Chromium process with a throwaway profile; closed (and the profile removed) on exit."""

    def __init__(self, executable: str | None = None, window: tuple[int, int] = (1280, 1800)) -> None:
        found = executable or find_chromium()
        if found is None:
            raise BrowserError(f"no Chromium found (looked for {', '.join(EXECUTABLES)}); apt-get install chromium")
        self.executable = found
        self.window = window
        self._profile = Path(tempfile.mkdtemp(prefix="footfall-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port: int | None = None

    async def __aenter__(self) -> HeadlessChromium:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self, timeout_s: float = 30.0) -> None:
        arguments = [
            self.executable, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={self._profile}",
            f"--window-size={self.window[0]},{self.window[1]}", "--no-first-run", "--no-default-browser-check",
            "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio", "about:blank",
        ]  # fmt: skip
        if os.geteuid() == 0:
            arguments.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        log = (self._profile / "chromium.log").open("wb")
        self._process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        active_port = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not (active_port.exists() and active_port.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = (self._profile / "chromium.log").read_text(errors="replace")[-2000:]
                raise BrowserError(f"Chromium did not open its DevTools port: {tail}")
            await asyncio.sleep(0.05)
        self.port = int(active_port.read_text().split()[0])
        self._session = aiohttp.ClientSession()

    async def new_page(self, headers: dict[str, str] | None = None) -> Page:
        """A new tab; ``headers`` go with every request it makes (e.g. Authorization)."""
        assert self._session is not None and self.port is not None, "start() first"
        async with self._session.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as response:
            target = await response.json(content_type=None)
        socket = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(socket)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        if headers:
            await page.send("Network.enable")
            await page.send("Network.setExtraHTTPHeaders", headers=headers)
        return page

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._process is not None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                await asyncio.to_thread(self._process.wait)
            self._process = None
        shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    """One tab: commands in, results and events out, over its DevTools websocket."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="devtools-reader")

    async def _read(self) -> None:
        async for message in self._socket:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = message.json()
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif "method" in data:
                self._events.put_nowait(data)
        for future in self._waiting.values():
            future.set_exception(BrowserError("the DevTools connection closed"))

    async def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        await self._socket.send_json({"id": number, "method": method, "params": params})
        reply = await asyncio.wait_for(future, timeout_s)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    async def navigate(self, url: str, timeout_s: float = 30.0) -> None:
        """Open ``url`` and wait for its load event (scripts with ``defer`` have run by then)."""
        while not self._events.empty():
            self._events.get_nowait()
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        deadline = time.monotonic() + timeout_s
        while True:
            event = await asyncio.wait_for(self._events.get(), max(0.0, deadline - time.monotonic()))
            if event["method"] == "Page.loadEventFired":
                return

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise), as JSON data."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:80]}: {details.get('exception', {}).get('description') or details}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 15.0) -> Any:
        """Poll until ``expression`` is truthy; return its value."""
        deadline = time.monotonic() + timeout_s
        while not (value := await self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout_s} s: {expression}")
            await asyncio.sleep(0.05)
        return value

    async def screenshot(self) -> bytes:
        """A PNG of the whole page, not just the window."""
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(result["data"])

    async def close(self) -> None:
        self._reader.cancel()
        await self._socket.close()
