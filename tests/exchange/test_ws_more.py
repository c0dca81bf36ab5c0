"""WsSession: outgoing budget, subscriptions, redaction, limiter, close, and rotation hand-over."""


from __future__ import annotations

import asyncio

import pytest
import structlog
from ws_fakes import (
    FAST,
    FakeBinance,
    ManualClock,
    Recorder,
    ServerConn,
    drain,
    eventually,
    gap,
    join_broadcast,
    markers,
    running,
    seqs,
    spec,
    trade,
)

from engine.clock import LiveClock
from exchange.binance.urls import ConnectionSpec
from exchange.ws import ConnectAttemptLimiter, OutgoingBudget, WsConfig, WsSession


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
