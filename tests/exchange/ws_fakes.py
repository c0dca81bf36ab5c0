"""Fakes for the websocket session tests: a scriptable Binance-like server and clocks."""


from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Self

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from engine.clock import LiveClock
from exchange.binance.urls import ConnectionSpec
from exchange.ws import WsSession

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.04, "watchdog_interval_s": 0.02}


# ----------------------------------------------------------------------------- clocks


class ManualClock:
    """Time moves only on advance(); sleepers wake when their deadline has passed."""

    def __init__(self) -> None:
        self._now_ns = 1_000_000_000
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now_ns(self) -> int:
        return 1_700_000_000_000_000_000 + self._now_ns

    def monotonic_ns(self) -> int:
        return self._now_ns

    async def sleep(self, seconds: float) -> None:
        deadline = self._now_ns + math.ceil(seconds * 1e9)
        if deadline <= self._now_ns:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        self._now_ns += round(seconds * 1e9)
        while self._sleepers and self._sleepers[0][0] <= self._now_ns:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


class RecordingClock(LiveClock):
    """Live time, but every requested sleep is written down (to check backoff delays)."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self._wall_ns = itertools.count(1_700_000_000_000_000_000, 1000)

    def now_ns(self) -> int:  # distinctive values prove the stamps come from this clock
        return next(self._wall_ns)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


# ----------------------------------------------------------------------------- fake server


@dataclass
class ServerConn:
    index: int
    ws: web.WebSocketResponse
    request: web.Request
    received: list[tuple[int, aiohttp.WSMsgType, bytes | str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    peer_closed: asyncio.Event = field(default_factory=asyncio.Event)
    frames_sent: int = 0

    def pongs(self) -> list[bytes]:
        return [bytes(d) for _, t, d in self.received if t is aiohttp.WSMsgType.PONG]

    def json_messages(self) -> list[dict]:
        return [json.loads(d) for _, t, d in self.received if t is aiohttp.WSMsgType.TEXT]


Script = Callable[["FakeBinance", ServerConn], Awaitable[None]]


async def stay_open(server: FakeBinance, conn: ServerConn) -> None:
    await conn.peer_closed.wait()


class FakeBinance:
    """Websocket server: each connection runs `script`; opens and closes are logged in order."""

    def __init__(self, script: Script = stay_open, clock: ManualClock | None = None) -> None:
        self.script = script
        self.clock = clock
        self.conns: list[ServerConn] = []
        self.events: list[tuple[str, int]] = []
        self.refuse_next = 0
        self.live: list[ServerConn] = []
        self.seq = 0
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def __aenter__(self) -> Self:
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()

    def url(self, path: str = "/stream?streams=btcusdt@trade") -> str:
        return str(self.server.make_url(path)).replace("http://", "ws://", 1)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return web.Response(status=503, text="try later")
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = ServerConn(len(self.conns) + 1, ws, request)
        self.conns.append(conn)
        self.events.append(("open", conn.index))
        reader = asyncio.create_task(self._read(conn))
        try:
            await self.script(self, conn)
            await reader
        finally:
            reader.cancel()
            if conn in self.live:
                self.live.remove(conn)
            self.events.append(("closed", conn.index))
        return ws

    async def _read(self, conn: ServerConn) -> None:
        async for msg in conn.ws:
            stamp = self.clock.monotonic_ns() if self.clock else 0
            conn.received.append((stamp, msg.type, msg.data))
            conn.arrived.set()
        conn.peer_closed.set()

    async def broadcast(
        self, count: int | None = None, shutdown_after: int | None = None, shutdown_frame: str = ""
    ) -> None:
        """Send one numbered trade to every live connection per tick, like the exchange fan-out."""
        for _ in itertools.count() if count is None else range(count):
            self.seq += 1
            frame = trade(self.seq)
            for conn in list(self.live):
                try:
                    await conn.ws.send_str(frame)
                    conn.frames_sent += 1
                    if conn.index == 1 and conn.frames_sent == shutdown_after:
                        await conn.ws.send_str(shutdown_frame)
                except (ConnectionError, RuntimeError):
                    pass  # peer went away between ticks
            await asyncio.sleep(0.002)


async def join_broadcast(server: FakeBinance, conn: ServerConn) -> None:
    server.live.append(conn)
    await conn.peer_closed.wait()


def trade(seq: int, stream: str = "btcusdt@trade") -> str:
    """Return a combined-stream frame written compactly, as Binance does."""
    return json.dumps({"stream": stream, "data": {"seq": seq}}, separators=(",", ":"))


# ----------------------------------------------------------------------------- helpers


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


class Recorder:
    """Collects the session's callbacks in call order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def kwargs(self) -> dict:
        return {
            "on_connected": lambda: self.log.append(("connected", "")),
            "on_disconnected": lambda r: self.log.append(("disconnected", r)),
            "on_data_lost": lambda r: self.log.append(("data_lost", r)),
        }

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]


@asynccontextmanager
async def running(session: WsSession) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(session.run())
    try:
        yield task
    finally:
        await asyncio.wait_for(session.close(), 10)  # returns once run() has finished
        await asyncio.wait_for(task, 10)


def drain(queue: asyncio.Queue) -> list[tuple[int, bytes]]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def seqs(items: list[tuple[int, bytes]]) -> list[int]:
    return [json.loads(p)["data"]["seq"] for _, p in items if isinstance(p, bytes) and b"seq" in p]


def gap(reason: str) -> tuple[str, str]:
    """Gap marker factory handed to the session: a value no frame can be confused with."""
    return ("gap", reason)


def markers(items: list[tuple[int, object]]) -> list[object]:
    return [p for _, p in items if not isinstance(p, bytes)]


def spec(server: FakeBinance, *streams: str) -> ConnectionSpec:
    streams = streams or ("btcusdt@trade",)
    return ConnectionSpec(server.url("/stream?streams=" + "/".join(streams)), "", streams)


# ----------------------------------------------------------------------------- tests
