"""The dashboard's server over real loopback sockets: page, snapshot API, websocket push, token.

The App is fed a slice of the real spot tape without sockets; the dashboard's `run()` serves it on
a free 127.0.0.1 port. Nothing here binds anything but 127.0.0.1: a non-loopback host is refused
before any socket opens, which is what is tested for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import structlog
from dashboard_harness import build_fed_app

from engine.app import App
from engine.dashboard import (
    Dashboard,
    DashboardAuthError,
    DashboardConfig,
    attach_dashboard,
    is_loopback,
    resolve_token,
)
from engine.notices import ErrorNotice, Notice

ENV = "TICKLOOP_DASHBOARD_TOKEN"
TOKEN = "s3cret-dashboard-token-42"
WRONG = "not-the-token-at-all-0000"


@pytest.fixture(scope="module")
def fed_app(tapes: dict[str, Path]) -> App:
    return build_fed_app([tapes["spot_btcusdt"]], {"mode": "live"}, limit=4_000)


async def serving(app: App, config: DashboardConfig) -> AsyncIterator[Dashboard]:
    board = attach_dashboard(app, config)
    task = asyncio.create_task(board.run())
    try:
        await asyncio.wait_for(board.started.wait(), 10)
        yield board
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def open_board(fed_app: App, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dashboard]:
    monkeypatch.delenv(ENV, raising=False)
    async for board in serving(fed_app, DashboardConfig(port=0, push_interval_s=0.05)):
        yield board


@pytest.fixture
async def locked_board(fed_app: App, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dashboard]:
    monkeypatch.setenv(ENV, TOKEN)
    async for board in serving(fed_app, DashboardConfig(port=0, push_interval_s=0.05)):
        yield board


async def test_loopback_without_token_serves_page_snapshot_and_pushes(
    open_board: Dashboard, fed_app: App
) -> None:
    rows = fed_app.pipeline.symbols["BTCUSDT"].rows
    async with aiohttp.ClientSession() as http:
        async with http.get(open_board.url) as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            page = await resp.text()
            policy = resp.headers["Content-Security-Policy"]
        async with http.get(open_board.url + "api/snapshot") as resp:
            assert resp.status == 200
            snap = await resp.json()
        async with http.ws_connect(open_board.url + "ws") as ws:
            first = json.loads((await ws.receive(timeout=10)).data)
            second = json.loads((await ws.receive(timeout=10)).data)
    # one self-contained page: style and script inlined, nothing to fetch from anywhere
    assert "<title>tickloop dashboard</title>" in page and "new WebSocket" in page
    assert "/*APP_JS*/" not in page and "/*APP_CSS*/" not in page
    assert " src=" not in page and " href=" not in page
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    coin = snap["coins"][0]
    assert coin["symbol"] == "BTCUSDT" and coin["price"] == rows.last("close")
    assert coin["row_ts_ms"] == rows.last("ts")
    assert second["seq"] > first["seq"]  # pushed again without being asked
    assert second["coins"][0]["price"] == rows.last("close")


@pytest.mark.parametrize("path", ["", "api/snapshot"])
async def test_token_is_required_on_page_and_api(locked_board: Dashboard, path: str) -> None:
    url = locked_board.url + path
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
        async with http.get(url, params={"token": WRONG}) as resp:
            assert resp.status == 403
        async with http.get(url, headers={"Authorization": f"Bearer {WRONG}"}) as resp:
            assert resp.status == 403
        async with http.get(url, params={"token": TOKEN[:-1]}) as resp:  # a prefix is not the token
            assert resp.status == 403
        async with http.get(url, params={"token": TOKEN}) as resp:
            assert resp.status == 200
        async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200


async def test_token_is_required_on_the_websocket(locked_board: Dashboard) -> None:
    url = locked_board.url + "ws"
    async with aiohttp.ClientSession() as http:
        for params, status in (({}, 401), ({"token": WRONG}, 403)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url, params=params)
            assert refused.value.status == status
        async with http.ws_connect(url, params={"token": TOKEN}) as ws:
            snap = json.loads((await ws.receive(timeout=10)).data)
    assert snap["coins"][0]["symbol"] == "BTCUSDT"


async def test_the_token_is_never_logged(
    fed_app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as captured:
        async for board in serving(fed_app, DashboardConfig(port=0, push_interval_s=0.05)):
            async with aiohttp.ClientSession() as http:
                for token in (TOKEN, WRONG):
                    async with http.get(board.url, params={"token": token}) as resp:
                        await resp.read()
                    async with http.get(
                        board.url + "api/snapshot", headers={"Authorization": f"Bearer {token}"}
                    ) as resp:
                        await resp.read()
                async with http.ws_connect(board.url + "ws", params={"token": TOKEN}) as ws:
                    await ws.receive(timeout=10)
    events = [e["event"] for e in captured]
    assert "dashboard_listening" in events and "dashboard_bad_token" in events  # logging did happen
    logged = repr(captured) + caplog.text
    assert TOKEN not in logged and WRONG not in logged


def test_a_host_other_than_loopback_needs_a_token(
    fed_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    listeners = list(fed_app.notice_listeners)
    for host in ("0.0.0.0", "192.168.1.10", "::", "dashboard.example.org"):
        with pytest.raises(DashboardAuthError, match=ENV):
            attach_dashboard(fed_app, DashboardConfig(host=host))
    assert fed_app.notice_listeners == listeners  # refused before attaching anything
    # loopback without a token is open
    assert resolve_token(DashboardConfig(host="127.0.0.1"), {}) is None
    assert resolve_token(DashboardConfig(host="localhost"), {}) is None
    # with a token in the named variable, any host is allowed (and the token required)
    assert resolve_token(DashboardConfig(host="0.0.0.0"), {ENV: TOKEN}) == TOKEN
    assert (
        resolve_token(DashboardConfig(host="10.0.0.5", auth_env="MY_DASH"), {"MY_DASH": TOKEN})
        == TOKEN
    )
    with pytest.raises(DashboardAuthError):
        resolve_token(DashboardConfig(host="10.0.0.5", auth_env="MY_DASH"), {ENV: TOKEN})
    with pytest.raises(DashboardAuthError, match="shorter"):
        resolve_token(DashboardConfig(), {ENV: "short"})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("10.0.0.1", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_a_busy_port_is_reported_not_fatal(
    fed_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    notices: list[Notice] = []
    fed_app.notice_listeners.append(notices.append)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        board = Dashboard(fed_app, DashboardConfig(port=port), token=None)
        await asyncio.wait_for(board.run(), 10)  # returns instead of raising
    fed_app.notice_listeners.remove(notices.append)
    assert not board.started.is_set()
    assert len(notices) == 1 and isinstance(notices[0], ErrorNotice)
    assert notices[0].component == "dashboard" and str(port) in notices[0].message
