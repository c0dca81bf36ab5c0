"""Drive Debian's Chromium headless over the DevTools protocol (its websocket, with aiohttp).

No Playwright or Selenium: one page, `navigate`, `evaluate` and `screenshot` are all the dashboard
tests need. Chromium listens for DevTools on 127.0.0.1 on a free port, which it writes into
`DevToolsActivePort` in its fresh profile folder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
APT_HINT = "apt-get update && apt-get install -y chromium"
# ../shared/reference/dependencies.md §9: flags that keep a headless Chromium off the network
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def chromium_or_skip() -> str:
    """Return the Chromium executable; skip only when TICKLOOP_NO_BROWSER=1, else fail clearly."""
    if os.environ.get("TICKLOOP_NO_BROWSER") == "1":
        pytest.skip("TICKLOOP_NO_BROWSER=1: the headless-browser test of the dashboard is off")
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        f"Chromium is not installed; the dashboard browser test needs it: `{APT_HINT}` "
        "(or set TICKLOOP_NO_BROWSER=1 to skip this test)"
    )


class CdpError(Exception):
    """Chromium answered a DevTools command with an error."""


class Chromium:
    """A headless Chromium with one page, controlled over the DevTools protocol."""

    def __init__(
        self, executable: str, profile_dir: Path, width: int = 1280, height: int = 900
    ) -> None:
        self.executable = executable
        self.profile_dir = profile_dir
        self.width, self.height = width, height
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 0

    async def __aenter__(self) -> Self:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            self.executable,
            *FLAGS,
            f"--user-data-dir={self.profile_dir}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        port = await self._devtools_port()
        self._http = aiohttp.ClientSession()
        async with self._http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()

    async def _devtools_port(self) -> int:
        marker = self.profile_dir / "DevToolsActivePort"
        for _ in range(300):  # Chromium writes the file once DevTools listens
            assert self._proc is not None
            if self._proc.returncode is not None:
                raise RuntimeError(
                    f"chromium exited with {self._proc.returncode} before DevTools started"
                )
            if marker.exists():
                first = marker.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            await asyncio.sleep(0.1)
        raise RuntimeError("chromium did not start DevTools within 30 s")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        assert self._ws is not None
        self._next_id += 1
        call_id = self._next_id
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            msg = await asyncio.wait_for(self._ws.receive(), 30)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise CdpError(f"DevTools connection ended: {msg.type}")
            data = json.loads(msg.data)
            if data.get("id") == call_id:
                if "error" in data:
                    raise CdpError(f"{method}: {data['error']}")
                return data.get("result", {})

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page; return its value (JSON-able)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CdpError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> bytes:
        """Save a PNG of the page's content (full width, as tall as the content) and return it."""
        height = int(await self.evaluate("Math.ceil(document.body.getBoundingClientRect().bottom)"))
        clip = {"x": 0, "y": 0, "width": self.width, "height": max(height, 200), "scale": 1}
        shot = await self.send(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data
