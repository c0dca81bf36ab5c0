"""The dashboard's aiohttp server: the page, a snapshot API and a websocket pushed every second.

Routes: `/` (the page, its script and style from the package inlined: nothing is fetched at
run time), `/api/snapshot` (the latest snapshot as JSON) and `/ws` (the snapshot, pushed every
`push_interval_s` of the App's clock). When a token is configured every route needs it, as
`?token=` or `Authorization: Bearer`; it is compared in constant time and never logged
(aiohttp's access log, which would print the query string, is off).

Each websocket client is served by its own handler, which sends only the newest snapshot: a slow
browser skips snapshots instead of queueing them, and never delays the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import weakref
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from engine.dashboard.config import DashboardConfig, resolve_token
from engine.dashboard.state import DashboardState
from engine.notices import ErrorNotice

if TYPE_CHECKING:
    from engine.app import App

WS_HEARTBEAT_S = 20.0
SEND_TIMEOUT_S = 10.0
# The page may talk to its own server only: inline script and style, the websocket, nothing else.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
SHUTDOWN_TIMEOUT_S = 2.0


def _static_text(name: str) -> str:
    return (resources.files("engine.dashboard") / "static" / name).read_text(encoding="utf-8")


def page_html() -> str:
    """Return the page with its style and script inlined (one request, one token check)."""
    html = _static_text("index.html")
    html = html.replace("/*APP_CSS*/", _static_text("app.css"))
    return html.replace("/*APP_JS*/", _static_text("app.js"))


class Dashboard:
    """Serve one App's dashboard on config.host:config.port."""

    def __init__(self, app: App, config: DashboardConfig, token: str | None) -> None:
        self.app = app
        self.config = config
        self.state = DashboardState(app, config)
        self._token = token.encode() if token else None
        self.log = structlog.get_logger("engine.dashboard")
        self.started = asyncio.Event()
        self.port: int | None = None  # the bound port (config.port may be 0)
        self._latest: str | None = None
        self._version = 0
        self._changed = asyncio.Condition()
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self.web_app = self._build_web_app()

    @property
    def url(self) -> str:
        """Return the page's address (without the token)."""
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}/"

    # -- aiohttp ---------------------------------------------------------------------------------
    def _build_web_app(self) -> web.Application:
        web_app = web.Application(middlewares=[self._auth])
        web_app.router.add_get("/", self._page)
        web_app.router.add_get("/api/snapshot", self._api_snapshot)
        web_app.router.add_get("/ws", self._ws)
        web_app.on_shutdown.append(self._close_sockets)
        return web_app

    @property
    def clients(self) -> int:
        """Return the number of connected pages."""
        return len(self._sockets)

    async def _close_sockets(self, _web_app: web.Application) -> None:
        # open pages would otherwise hold the shutdown for its whole timeout
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"engine stopping")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._token is None:
            return await handler(request)
        offered = request.query.get("token")
        header = request.headers.get("Authorization", "")
        if offered is None and header.startswith("Bearer "):
            offered = header[len("Bearer ") :]
        if not offered:
            raise web.HTTPUnauthorized(text="dashboard: a token is required (?token=...)")
        # surrogateescape: a header byte that is not UTF-8 arrives as a lone surrogate, which
        # plain .encode() refuses (a 500); it is simply not the token
        if not hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), self._token):
            self.log.warning("dashboard_bad_token", path=request.path, remote=request.remote)
            raise web.HTTPForbidden(text="dashboard: wrong token")
        return await handler(request)

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(text=page_html(), content_type="text/html", headers=PAGE_HEADERS)

    async def _api_snapshot(self, _request: web.Request) -> web.Response:
        body = self._latest if self._latest is not None else self._take_snapshot()
        return web.Response(text=body, content_type="application/json")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.log.info("dashboard_client", remote=request.remote, clients=self.clients)
        try:
            async with asyncio.TaskGroup() as tg:
                sender = tg.create_task(self._send_latest(ws))
                async for msg in ws:  # the page sends nothing; reading sees the close
                    if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                        break
                sender.cancel()
        except* (ConnectionError, TimeoutError):
            pass  # the browser went away
        finally:
            self._sockets.discard(ws)
        return ws

    async def _send_latest(self, ws: web.WebSocketResponse) -> None:
        sent = -1
        while not ws.closed:
            async with self._changed:
                while self._version == sent:
                    await self._changed.wait()
                payload, sent = self._latest, self._version
            if payload is not None:
                await asyncio.wait_for(ws.send_str(payload), SEND_TIMEOUT_S)

    # -- push loop ------------------------------------------------------------------------------
    def _take_snapshot(self) -> str:
        return orjson.dumps(self.state.snapshot()).decode()

    async def publish(self) -> None:
        """Take a snapshot and hand it to every connected page."""
        payload = self._take_snapshot()
        async with self._changed:
            self._latest = payload
            self._version += 1
            self._changed.notify_all()

    async def run(self) -> None:
        """Serve until cancelled; a port that cannot be bound is reported, never fatal to trading."""
        runner = web.AppRunner(
            self.web_app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port)
            try:
                await site.start()
            except OSError as exc:
                self.log.error(
                    "dashboard_bind_failed",
                    host=self.config.host,
                    port=self.config.port,
                    error=str(exc),
                )
                now_ms = self.app.clock.now_ns() // 1_000_000
                self.app.notify(
                    ErrorNotice(
                        ts_ms=now_ms,
                        component="dashboard",
                        message=f"cannot listen on {self.config.host}:"
                        f"{self.config.port}: {exc.strerror or exc}",
                    )
                )
                return
            self.port = _bound_port(runner, self.config.port)
            self.log.info(
                "dashboard_listening", url=self.url, token_required=self._token is not None
            )
            self.started.set()
            while True:
                await self.publish()
                await self.app.clock.sleep(self.config.push_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await runner.cleanup()


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


def attach_dashboard(app: App, config: DashboardConfig) -> Dashboard:
    """Attach a dashboard to app: its listeners now, its server as a service of app.run().

    Raise DashboardAuthError (before any socket opens) when config.host is not loopback and no
    token is set in the environment variable config.auth_env.
    """
    token = resolve_token(config)
    dashboard = Dashboard(app, config, token)
    dashboard.state.attach()
    app.add_service("dashboard", dashboard.run)
    return dashboard
