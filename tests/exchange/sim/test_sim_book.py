"""REST snapshots agree with the replayed stream: a client syncing by Binance's rules ends equal
to the simulator's own book (the client side is sim_client_reference.ClientBook)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import aiohttp
from sim_client_reference import ClientBook, recorded_diffs, recorded_snapshot

from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline


async def collect(ws: aiohttp.ClientWebSocketResponse, out: asyncio.Queue) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            await out.put(json.loads(msg.data)["data"])
    await out.put(None)


async def test_spot_snapshot_mid_stream_then_diffs_match_the_sim_book(
    spot_timeline: Timeline,
) -> None:
    sim = SimServer(spot_timeline, speed=0, start_delay_s=0, close_when_finished=True)
    sent = 0
    paused = asyncio.Event()
    sim_levels: dict[int, tuple[list, list]] = {}

    def on_depth(symbol: str, final_update_id: int) -> None:
        nonlocal sent
        sent += 1
        if sent == 400:
            sim.pause()
            paused.set()
        elif sent > 400 and sent % 10 == 0:
            sim_levels[final_update_id] = sim.book_levels(symbol)

    sim.on_depth_sent(on_depth)
    async with sim, aiohttp.ClientSession() as http:
        diffs: asyncio.Queue = asyncio.Queue()
        ws = await http.ws_connect(f"{sim.base_ws}/stream?streams=btcusdt@depth@100ms")
        reader = asyncio.create_task(collect(ws, diffs))
        await paused.wait()
        async with http.get(f"{sim.base_http}/api/v3/depth?symbol=BTCUSDT&limit=5000") as resp:
            snapshot = await resp.json()
        assert snapshot["lastUpdateId"] == sim.last_update_id("BTCUSDT")
        assert len(snapshot["bids"]) < 5000 and len(snapshot["asks"]) < 5000  # whole book
        sim.resume()
        book = ClientBook(futures=False, snapshot=snapshot)
        compared = 0
        while (diff := await diffs.get()) is not None:
            if book.feed(diff) and diff["u"] in sim_levels:
                assert book.levels() == sim_levels[diff["u"]]
                compared += 1
        await reader
        assert compared == len(sim_levels) > 250
        assert book.last == sim.last_update_id("BTCUSDT")
        assert book.levels() == sim.book_levels("BTCUSDT")


async def test_futures_client_syncing_from_the_snapshot_served_before_the_stream(
    usdm_timeline: Timeline, usdm_tape: Path
) -> None:
    """Before the replay, REST serves the recorded snapshot: newer than the stream's start."""
    tape_snapshot = recorded_snapshot(usdm_tape)
    sim = SimServer(usdm_timeline, speed=0, autostart=False, close_when_finished=True)
    sim_top: dict[int, tuple[list, list]] = {}
    sim.on_depth_sent(
        lambda symbol, u: (
            sim_top.__setitem__(u, sim.book_levels(symbol, depth=50)) if u % 32 == 0 else None
        )
    )
    async with sim, aiohttp.ClientSession() as http:
        async with http.get(f"{sim.base_http}/fapi/v1/depth?symbol=BTCUSDT&limit=1000") as resp:
            snapshot = await resp.json()
        assert snapshot["lastUpdateId"] == tape_snapshot["lastUpdateId"]
        assert snapshot["bids"] == tape_snapshot["bids"][:1000]
        assert {"E", "T"} <= set(snapshot)
        diffs: asyncio.Queue = asyncio.Queue()
        ws = await http.ws_connect(f"{sim.base_ws}/public/stream?streams=btcusdt@depth@100ms")
        reader = asyncio.create_task(collect(ws, diffs))
        sim.start()
        book = ClientBook(futures=True, snapshot=snapshot)
        skipped = compared = 0
        while (diff := await diffs.get()) is not None:
            if not book.feed(diff):
                skipped += 1
            elif diff["u"] in sim_top:
                assert book.levels(50) == sim_top[diff["u"]]
                compared += 1
        await reader
    assert skipped > 0  # the stream started before the snapshot: early diffs were dropped
    assert compared == len(sim_top) > 50
    assert book.levels() == sim.book_levels("BTCUSDT")  # same seed snapshot: every level equal


async def test_sim_book_equals_an_offline_reconstruction_from_the_tape(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    # (USDⓈ-M: the socket test above ends with the same whole-book equality.)
    reference = ClientBook(False, recorded_snapshot(spot_tape))
    for diff in recorded_diffs(spot_tape):
        reference.feed(diff)
    async with SimServer(spot_timeline, speed=0) as sim:
        sim.start()
        await sim.wait_finished()
        assert sim.last_update_id("BTCUSDT") == reference.last
        assert sim.book_levels("BTCUSDT") == reference.levels()


async def test_rest_depth_follows_the_replay_position(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    tape_snapshot = recorded_snapshot(spot_tape)
    diffs = recorded_diffs(spot_tape)
    sim = SimServer(spot_timeline, speed=0, autostart=False)
    seen: list[int] = []

    def on_depth(symbol: str, u: int) -> None:
        seen.append(u)
        if len(seen) == 1000:
            sim.pause()

    sim.on_depth_sent(on_depth)
    async with sim, aiohttp.ClientSession() as http:
        url = f"{sim.base_http}/api/v3/depth?symbol=BTCUSDT&limit=5"
        async with http.get(url) as resp:
            before = await resp.json()
        sim.start()
        while len(seen) < 1000:
            await asyncio.sleep(0.01)
        async with http.get(url) as resp:
            paused = await resp.json()
        sim.resume()
        await sim.wait_finished()
        async with http.get(url) as resp:
            after = await resp.json()
    assert before == {
        "lastUpdateId": tape_snapshot["lastUpdateId"],
        "bids": tape_snapshot["bids"][:5],
        "asks": tape_snapshot["asks"][:5],
    }
    assert paused["lastUpdateId"] == diffs[999]["u"] == seen[999]
    assert after["lastUpdateId"] == diffs[-1]["u"]
    best_bid, best_ask = Decimal(paused["bids"][0][0]), Decimal(paused["asks"][0][0])
    assert best_bid < best_ask
