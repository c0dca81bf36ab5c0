"""WsSession against small aiohttp websocket servers on 127.0.0.1 (real sockets, no mocks).

Tests assert on counts and order, never on durations; waits are bounded polls. Where time
itself is the subject (outgoing budget, attempt limiter) a ManualClock moves only when told.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random

import pytest
from ws_fakes import (
    FAST,
    FakeBinance,
    Recorder,
    RecordingClock,
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
from exchange.ws import WsConfig, WsSession


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
