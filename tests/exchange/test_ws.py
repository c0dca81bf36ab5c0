"""WsSession against small aiohttp websocket servers on 127.0.0.1 (real sockets, no mocks).

Tests assert on counts and order, never on durations; waits are bounded polls. Where time
itself is the subject (outgoing budget, attempt limiter) a ManualClock moves only when told.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Self

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from engine.clock import LiveClock
from exchange.binance.urls import ConnectionSpec
from exchange.ws import ConnectAttemptLimiter, OutgoingBudget, WsConfig, WsSession

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


async def test_frames_reach_the_queue_as_raw_bytes_stamped_by_the_clock() -> None:
    spaced = '{"stream": "ethusdt@trade", "data": {"seq": 50}}'
    sent = [trade(i) for i in range(50)] + [spaced, '{"e":"trade","raw":true}']

    async def push(server: FakeBinance, conn: ServerConn) -> None:
        for frame in sent:
            await conn.ws.send_str(frame)
        await conn.peer_closed.wait()

    clock = RecordingClock()
    async with FakeBinance(push) as server:
        queue: asyncio.Queue = asyncio.Queue()
        session = WsSession(spec(server), queue, clock, config=WsConfig(**FAST))
        async with running(session):
            await eventually(lambda: queue.qsize() == len(sent), "all frames")
        items = drain(queue)
    assert [payload for _, payload in items] == [f.encode() for f in sent]
    stamps = [ts for ts, _ in items]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(ts >= 1_700_000_000_000_000_000 and ts % 1000 == 0 for ts in stamps)
    assert session.stats.frames == len(sent)
    assert session.stats.bytes == sum(len(f) for f in sent)
    fields = session.stats_fields()
    assert set(fields["last_frame_ns"]) == {"btcusdt@trade", "ethusdt@trade", "raw"}
    assert fields["reconnects"] == 0


async def test_server_pings_are_answered_with_their_payload() -> None:
    payloads = [f"ping-{i}".encode() for i in range(5)] + [b""]
    missed: list[bytes] = []

    async def pinger(server: FakeBinance, conn: ServerConn) -> None:
        for payload in payloads:
            await conn.ws.ping(payload)
            try:
                await asyncio.wait_for(_pong_count(conn, len(conn.pongs()) + 1), 3)
            except TimeoutError:
                missed.append(payload)
                await conn.ws.close(code=1008, message=b"pong timeout")  # what Binance does
                return
        await conn.peer_closed.wait()

    async with FakeBinance(pinger) as server:
        config = WsConfig(max_outgoing_per_s=100, **FAST)
        session = WsSession(spec(server), asyncio.Queue(), LiveClock(), config=config)
        async with running(session):
            await eventually(
                lambda: bool(server.conns) and len(server.conns[0].pongs()) == len(payloads),
                "pongs",
            )
        assert missed == []
        assert server.conns[0].pongs() == payloads
        assert len(server.conns) == 1
    assert session.stats.pings_received == session.stats.pings_answered == len(payloads)


async def _pong_count(conn: ServerConn, count: int) -> None:
    while len(conn.pongs()) < count:
        conn.arrived.clear()
        await conn.arrived.wait()


async def test_abrupt_closes_reconnect_with_callbacks_and_gap_markers() -> None:
    async def flaky(server: FakeBinance, conn: ServerConn) -> None:
        await conn.ws.send_str(trade(conn.index))
        if conn.index == 1:
            await conn.ws.close()  # clean close frame
        elif conn.index == 2:
            assert conn.request.transport is not None
            conn.request.transport.abort()  # TCP reset, no close frame
        elif conn.index == 3:
            await conn.ws.close(code=1011)
        else:
            await conn.peer_closed.wait()

    events = Recorder()
    async with FakeBinance(flaky) as server:
        queue: asyncio.Queue = asyncio.Queue()
        session = WsSession(
            spec(server),
            queue,
            LiveClock(),
            config=WsConfig(**FAST),
            gap_marker=gap,
            **events.kwargs(),
        )
        async with running(session):
            await eventually(lambda: queue.qsize() >= 7, "four connections' frames")
        items = drain(queue)
    shape = ["gap" if isinstance(p, tuple) else json.loads(p)["data"]["seq"] for _, p in items]
    assert shape == [1, "gap", 2, "gap", 3, "gap", 4]
    assert all(reason.startswith("disconnected: ") for _, reason in markers(items))
    assert events.kinds() == ["connected"] + ["disconnected", "data_lost", "connected"] * 3
    assert session.stats.reconnects == 3
    assert session.stats.data_losses == 3


async def test_backoff_is_exponential_with_full_jitter() -> None:
    clock = RecordingClock()
    async with FakeBinance() as server:
        server.refuse_next = 5
        config = WsConfig(backoff_initial_s=0.001, backoff_max_s=0.004, watchdog_interval_s=900)
        session = WsSession(
            spec(server), asyncio.Queue(), clock, config=config, rng=random.Random(42)
        )
        async with running(session):
            await eventually(lambda: len(server.conns) == 1, "connection after refusals")
    reference = random.Random(42)
    ceilings = [0.001, 0.002, 0.004, 0.004, 0.004]  # min(cap, initial * 2**n)
    expected = [reference.uniform(0.0, c) for c in ceilings]
    assert [s for s in clock.sleeps if s != 900] == expected
    assert session.stats.connect_failures == 5


@pytest.mark.parametrize(
    ("reset_after_s", "ceilings"),
    [
        (0.0, [0.001, 0.001, 0.001, 0.001]),  # every connection counted healthy: reset each time
        (1e6, [0.001, 0.002, 0.004, 0.004]),  # never healthy long enough: keeps growing
    ],
)
async def test_backoff_resets_only_after_a_healthy_connection(
    reset_after_s: float, ceilings: list[float]
) -> None:
    async def slam(server: FakeBinance, conn: ServerConn) -> None:
        if conn.index <= 4:
            await conn.ws.close()
        else:
            await conn.peer_closed.wait()

    clock = RecordingClock()
    async with FakeBinance(slam) as server:
        config = WsConfig(
            backoff_initial_s=0.001,
            backoff_max_s=0.004,
            watchdog_interval_s=900,
            backoff_reset_after_s=reset_after_s,
        )
        session = WsSession(
            spec(server), asyncio.Queue(), clock, config=config, rng=random.Random(7)
        )
        async with running(session):
            await eventually(lambda: len(server.conns) == 5, "fifth connection")
    reference = random.Random(7)
    assert [s for s in clock.sleeps if s != 900] == [reference.uniform(0.0, c) for c in ceilings]


async def test_silent_connection_is_a_stall_and_reconnects() -> None:
    async def goes_quiet(server: FakeBinance, conn: ServerConn) -> None:
        await conn.ws.send_str(trade(conn.index))
        await conn.peer_closed.wait()  # no data, no ping, no close: a zombie

    events = Recorder()
    async with FakeBinance(goes_quiet) as server:
        config = WsConfig(connection_timeout_s=0.2, **FAST)
        session = WsSession(
            spec(server), asyncio.Queue(), LiveClock(), config=config, **events.kwargs()
        )
        async with running(session):
            await eventually(lambda: len(server.conns) >= 2, "reconnect after stall")
            await eventually(lambda: server.conns[0].peer_closed.is_set(), "zombie closed")
        assert server.events[:3] == [("open", 1), ("closed", 1), ("open", 2)]
    assert session.stats.stalls >= 1
    assert events.log[1][0] == "disconnected" and "no frame and no ping" in events.log[1][1]
    assert events.log[2][0] == "data_lost"


async def test_per_stream_watchdog_names_the_silent_stream_and_ignores_unwatched() -> None:
    streams = ("btcusdt@depth@100ms", "btcusdt@trade", "ethusdt@depth@100ms")

    async def only_btc_depth(server: FakeBinance, conn: ServerConn) -> None:
        for i in itertools.count():
            if conn.peer_closed.is_set():
                return
            await conn.ws.send_str(trade(i, "btcusdt@depth@100ms"))
            await asyncio.sleep(0.01)

    events = Recorder()
    async with FakeBinance(only_btc_depth) as server:
        config = WsConfig(stall_timeout_s={"depth": 0.3, "trade": None}, **FAST)
        session = WsSession(
            spec(server, *streams), asyncio.Queue(), LiveClock(), config=config, **events.kwargs()
        )
        async with running(session):
            await eventually(lambda: "data_lost" in events.kinds(), "stream stall reported")
    lost = [reason for kind, reason in events.log if kind == "data_lost"]
    assert "ethusdt@depth@100ms" in lost[0]
    assert all("btcusdt" not in reason for reason in lost)


@pytest.mark.parametrize(
    "shutdown_frame",
    [
        '{"e":"serverShutdown","E":1770123456789}',
        '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}',
    ],
)
async def test_server_shutdown_rotates_with_overlap_and_loses_nothing(shutdown_frame: str) -> None:
    events = Recorder()
    async with FakeBinance(join_broadcast) as server:
        queue: asyncio.Queue = asyncio.Queue()
        session = WsSession(
            spec(server),
            queue,
            LiveClock(),
            config=WsConfig(**FAST),
            gap_marker=gap,
            **events.kwargs(),
        )
        async with running(session):
            await eventually(lambda: bool(server.live), "first connection")
            feed = asyncio.create_task(
                server.broadcast(shutdown_after=20, shutdown_frame=shutdown_frame)
            )
            await eventually(lambda: ("closed", 1) in server.events, "old connection closed")
            await eventually(
                lambda: len(server.conns) == 2 and server.conns[1].frames_sent > 20,
                "new connection delivering",
            )
            feed.cancel()
        items = drain(queue)
    assert server.events[:3] == [("open", 1), ("open", 2), ("closed", 1)]
    got = seqs(items)
    assert set(range(1, max(got) + 1)) <= set(got)  # duplicates allowed, gaps not
    assert shutdown_frame.encode() in [p for _, p in items]
    assert markers(items) == []
    assert events.kinds() == ["connected"]
    assert session.stats.rotations == 1 and session.stats.reconnects == 0


async def test_rotation_by_max_lifetime_overlaps_connections() -> None:
    events = Recorder()
    async with FakeBinance(join_broadcast) as server:
        queue: asyncio.Queue = asyncio.Queue()
        config = WsConfig(rotate_after_s=0.15, **FAST)
        session = WsSession(
            spec(server), queue, LiveClock(), config=config, gap_marker=gap, **events.kwargs()
        )
        async with running(session):
            feed = asyncio.create_task(server.broadcast())
            await eventually(lambda: ("closed", 2) in server.events, "two rotations")
            feed.cancel()
        items = drain(queue)
    opens = [i for kind, i in server.events if kind == "open"]
    for old in (1, 2):
        assert server.events.index(("open", old + 1)) < server.events.index(("closed", old))
    assert opens[:3] == [1, 2, 3]
    got = seqs(items)
    assert set(range(min(got), max(got) + 1)) <= set(got)
    assert markers(items) == []
    assert events.kinds() == ["connected"]
    assert session.stats.rotations >= 2 and session.stats.reconnects == 0


async def test_full_queue_drops_frames_reports_loss_once_and_marks_the_gap() -> None:
    resume = asyncio.Event()

    async def burst(server: FakeBinance, conn: ServerConn) -> None:
        for i in range(1, 11):
            await conn.ws.send_str(trade(i))
        await resume.wait()
        for i in (11, 12):
            await conn.ws.send_str(trade(i))
        await conn.peer_closed.wait()

    events = Recorder()
    async with FakeBinance(burst) as server:
        queue: asyncio.Queue = asyncio.Queue(maxsize=4)
        session = WsSession(
            spec(server),
            queue,
            LiveClock(),
            config=WsConfig(**FAST),
            gap_marker=gap,
            **events.kwargs(),
        )
        async with running(session):
            await eventually(lambda: session.stats.overflows == 6, "six overflows")
            first = drain(queue)
            resume.set()
            await eventually(lambda: queue.qsize() == 3, "frames after the gap")
            second = drain(queue)
    assert seqs(first) == [1, 2, 3, 4]
    assert second[0][1] == ("gap", "consumer queue full (4 frames)")
    assert seqs(second) == [11, 12]
    assert events.kinds() == ["connected", "data_lost"]
    assert "queue full" in events.log[1][1]
    assert session.stats.frames == 12


@pytest.mark.parametrize("budget", [5, 10])
async def test_outgoing_messages_never_exceed_the_budget(budget: int) -> None:
    clock = ManualClock()
    ping_payloads = [f"p{i}".encode() for i in range(12)]

    async def ping_flood(server: FakeBinance, conn: ServerConn) -> None:
        for payload in ping_payloads:
            await conn.ws.ping(payload)
        await conn.peer_closed.wait()

    async with FakeBinance(ping_flood, clock=clock) as server:
        session = WsSession(
            spec(server), asyncio.Queue(), clock, config=WsConfig(max_outgoing_per_s=budget)
        )
        async with running(session):
            await eventually(lambda: session.connected, "connected")
            for i in range(3):
                session.subscribe([f"s{i}usdt@trade", f"s{i}usdt@depth@100ms"])
            expected_messages = len(ping_payloads) + 3
            for _ in range(2000):
                await asyncio.sleep(0.002)  # let woken writers write at this instant
                await eventually(
                    lambda: len(server.conns[0].received) == session.stats.messages_sent,
                    "server caught up",
                )
                if len(server.conns[0].received) >= expected_messages:
                    break
                clock.advance(0.05)
        conn = server.conns[0]
    assert conn.pongs() == ping_payloads
    subscribes = conn.json_messages()
    assert [m["params"] for m in subscribes] == [
        [f"s{i}usdt@trade", f"s{i}usdt@depth@100ms"] for i in range(3)
    ]
    assert all(m["method"] == "SUBSCRIBE" for m in subscribes)
    stamps = [stamp for stamp, _, _ in conn.received]
    assert len(stamps) == expected_messages
    worst = max(sum(1 for s in stamps if t <= s <= t + 1_000_000_000) for t in stamps)
    assert worst <= budget


async def test_subscriptions_are_restored_after_reconnect() -> None:
    async def record_then_close(server: FakeBinance, conn: ServerConn) -> None:
        if conn.index == 1:
            await eventually(lambda: len(conn.json_messages()) == 2, "two control messages")
            await conn.ws.close()
        else:
            await conn.peer_closed.wait()

    async with FakeBinance(record_then_close) as server:
        base = ("btcusdt@depth@100ms", "btcusdt@trade")
        config = WsConfig(max_outgoing_per_s=100, **FAST)
        session = WsSession(spec(server, *base), asyncio.Queue(), LiveClock(), config=config)
        async with running(session):
            await eventually(lambda: session.connected, "connected")
            session.subscribe(["ethusdt@trade", "ethusdt@depth@100ms", "btcusdt@trade"])
            session.unsubscribe(["btcusdt@depth@100ms"])
            await eventually(
                lambda: len(server.conns) == 2 and len(server.conns[1].json_messages()) == 2,
                "restored",
            )
        first, second = server.conns[0].json_messages(), server.conns[1].json_messages()
    assert [(m["method"], m["params"]) for m in first] == [
        ("SUBSCRIBE", ["ethusdt@trade", "ethusdt@depth@100ms"]),
        ("UNSUBSCRIBE", ["btcusdt@depth@100ms"]),
    ]
    assert [(m["method"], m["params"]) for m in second] == [
        ("SUBSCRIBE", ["ethusdt@trade", "ethusdt@depth@100ms"]),
        ("UNSUBSCRIBE", ["btcusdt@depth@100ms"]),
    ]
    assert len({m["id"] for m in first + second}) == 4
    assert session.streams == ("btcusdt@trade", "ethusdt@trade", "ethusdt@depth@100ms")


async def test_logs_never_contain_the_listen_key() -> None:
    key = "Xq7" * 20

    async def close_once(server: FakeBinance, conn: ServerConn) -> None:
        if conn.index == 1:
            await conn.ws.close()
        await conn.peer_closed.wait()

    async with FakeBinance(close_once) as server:
        server.refuse_next = 1
        url = server.url(f"/private/ws?listenKey={key}&events=ORDER_TRADE_UPDATE")
        with structlog.testing.capture_logs() as logs:
            session = WsSession(
                ConnectionSpec(url, "private", ()),
                asyncio.Queue(),
                LiveClock(),
                config=WsConfig(**FAST),
            )
            async with running(session):
                await eventually(lambda: len(server.conns) == 2, "second connection")
    assert {entry["event"] for entry in logs} >= {
        "ws.connect_failed",
        "ws.connected",
        "ws.disconnected",
    }
    assert key not in repr(logs)


async def test_connect_attempt_limiter_waits_for_the_window() -> None:
    clock = ManualClock()
    limiter = ConnectAttemptLimiter(clock, max_attempts=3, window_s=10.0)
    for _ in range(3):
        await asyncio.wait_for(limiter.acquire(), 1)
    fourth = asyncio.create_task(limiter.acquire())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not fourth.done()
    clock.advance(9.9)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not fourth.done()
    clock.advance(0.1)
    await asyncio.wait_for(fourth, 1)


async def test_outgoing_budget_spacing_by_hand() -> None:
    clock = ManualClock()
    budget = OutgoingBudget(5, clock)
    granted: list[int] = []

    async def sender() -> None:
        for _ in range(6):
            await budget.acquire()
            granted.append(clock.monotonic_ns() - 1_000_000_000)

    task = asyncio.create_task(sender())
    for _ in range(40):
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(0.05)
    await asyncio.wait_for(task, 1)
    # 5 per second allowed in any closed 1 s window: one every 250 ms
    assert granted == [0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000, 1_250_000_000]


async def test_close_before_run_makes_run_return_at_once() -> None:
    session = WsSession(ConnectionSpec("ws://127.0.0.1:9/x", "", ()), asyncio.Queue(), LiveClock())
    await session.close()
    await asyncio.wait_for(session.run(), 5)
    assert session.stats.connects == 0


async def test_without_gap_marker_only_frames_reach_the_queue() -> None:
    async def one_frame_then_close(server: FakeBinance, conn: ServerConn) -> None:
        await conn.ws.send_str(trade(conn.index))
        if conn.index == 1:
            await conn.ws.close()
        await conn.peer_closed.wait()

    events = Recorder()
    async with FakeBinance(one_frame_then_close) as server:
        queue: asyncio.Queue = asyncio.Queue()
        session = WsSession(
            spec(server), queue, LiveClock(), config=WsConfig(**FAST), **events.kwargs()
        )
        async with running(session):
            await eventually(lambda: queue.qsize() == 2, "two frames")
    assert seqs(drain(queue)) == [1, 2]
    assert events.kinds() == ["connected", "disconnected", "data_lost", "connected"]


async def test_old_connection_dying_mid_rotation_hands_over_and_reports_the_loss() -> None:
    release = asyncio.Event()

    async def shutdown_then_die(server: FakeBinance, conn: ServerConn) -> None:
        if conn.index == 1:
            await conn.ws.send_str(trade(1))
            await conn.ws.send_str('{"e":"serverShutdown","E":1}')
            await eventually(lambda: len(server.conns) == 2, "replacement opened")
            assert conn.request.transport is not None
            conn.request.transport.abort()
            return
        await release.wait()  # the replacement stays quiet until the client saw the old one die
        await conn.ws.send_str(trade(2))
        await conn.peer_closed.wait()

    events = Recorder()
    async with FakeBinance(shutdown_then_die) as server:
        queue: asyncio.Queue = asyncio.Queue()
        session = WsSession(
            spec(server),
            queue,
            LiveClock(),
            config=WsConfig(**FAST),
            gap_marker=gap,
            **events.kwargs(),
        )
        async with running(session):
            await eventually(lambda: "disconnected" in events.kinds(), "old connection lost")
            release.set()
            await eventually(lambda: len(seqs(list(queue._queue))) == 2, "frame from new socket")
        items = drain(queue)
    assert len(server.conns) == 2  # handed over, no third connection
    assert events.kinds() == ["connected", "disconnected", "data_lost", "connected"]
    shape = ["gap" if isinstance(p, tuple) else p for _, p in items]
    assert shape == [trade(1).encode(), b'{"e":"serverShutdown","E":1}', "gap", trade(2).encode()]
    assert session.stats.rotations == 0 and session.stats.reconnects == 1


async def test_replacement_that_delivers_nothing_is_abandoned_and_retried() -> None:
    async def second_is_mute(server: FakeBinance, conn: ServerConn) -> None:
        if conn.index == 2:  # pings but never data: alive, yet useless as a replacement
            while not conn.peer_closed.is_set():
                await conn.ws.ping(b"still here")
                await asyncio.sleep(0.02)
        else:
            await join_broadcast(server, conn)

    events = Recorder()
    async with FakeBinance(second_is_mute) as server:
        queue: asyncio.Queue = asyncio.Queue()
        config = WsConfig(connection_timeout_s=0.2, **FAST)
        session = WsSession(
            spec(server), queue, LiveClock(), config=config, gap_marker=gap, **events.kwargs()
        )
        async with running(session):
            await eventually(lambda: bool(server.live), "first connection")
            feed = asyncio.create_task(
                server.broadcast(shutdown_after=10, shutdown_frame='{"e":"serverShutdown"}')
            )
            await eventually(lambda: ("closed", 1) in server.events, "old connection closed")
            feed.cancel()
        items = drain(queue)
    assert server.events[:5] == [
        ("open", 1),
        ("open", 2),
        ("closed", 2),
        ("open", 3),
        ("closed", 1),
    ]
    got = seqs(items)
    assert set(range(1, max(got) + 1)) <= set(got)
    assert markers(items) == [] and events.kinds() == ["connected"]
    assert session.stats.rotations == 1
