"""The simulator's websockets over real sockets: recorded bytes, order, routing, subscribe protocol."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from engine.tape import read_tape
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline

FAST = {"speed": 0, "start_delay_s": 0.05, "close_when_finished": True}


def tape_envelopes(path: Path) -> list[bytes]:
    """Every websocket envelope of a tape, in file order (read directly, not via the sim)."""
    return [f.payload for f in read_tape(path) if f.snapshot_symbol is None]


def data_part(envelope: bytes) -> bytes:
    """The raw payload inside a compact combined-stream envelope, cut out by hand."""
    stream = json.loads(envelope)["stream"]
    head = b'{"stream":"' + stream.encode() + b'","data":'
    assert envelope.startswith(head) and envelope.endswith(b"}")
    return envelope[len(head) : -1]


async def read_all(ws: aiohttp.ClientWebSocketResponse) -> list[bytes]:
    """Read text frames until the server closes the connection."""
    received = []
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            received.append(msg.data.encode())
    return received


async def test_combined_stream_frames_arrive_in_order_and_byte_identical(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    expected = tape_envelopes(spot_tape)
    streams = "btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"
    async with (
        SimServer(spot_timeline, **FAST) as sim,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{sim.base_ws}/stream?streams={streams}") as ws,
    ):
        received = await read_all(ws)
    assert len(received) == len(expected) == 41248
    assert received == expected


async def test_raw_stream_carries_the_recorded_data_bytes(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    expected = [data_part(e) for e in tape_envelopes(spot_tape) if b'"btcusdt@trade"' in e[:40]]
    async with (
        SimServer(spot_timeline, **FAST) as sim,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{sim.base_ws}/ws/btcusdt@trade") as ws,
    ):
        received = await read_all(ws)
    assert len(received) == 9757
    assert received == expected


async def test_two_tapes_merge_by_receive_time(spot_tape: Path, tapes: dict[str, Path]) -> None:
    eth = tapes["spot_ethusdt"]
    tagged = [(f.ts_recv_ns, f.payload) for p in (spot_tape, eth) for f in read_tape(p)]
    expected = [
        payload for _, payload in sorted(tagged, key=lambda t: t[0]) if b'@trade"' in payload[:40]
    ]
    async with SimServer([spot_tape, eth], **FAST) as sim, aiohttp.ClientSession() as http:
        url = f"{sim.base_ws}/stream?streams=btcusdt@trade/ethusdt@trade"
        async with http.ws_connect(url) as ws:
            received = await read_all(ws)
    assert received == expected
    assert sim.market_of("ETHUSDT").value == "spot"


async def test_futures_streams_deliver_only_on_their_route(usdm_timeline: Timeline) -> None:
    trades = [
        json.loads(e)["data"]
        for f in usdm_timeline.tape_paths
        for e in tape_envelopes(f)
        if b'"btcusdt@trade"' in e[:40]
    ]
    market_trades = [t for t in trades if t.get("X", "MARKET") == "MARKET"]
    async with SimServer(usdm_timeline, **FAST) as sim, aiohttp.ClientSession() as http:
        base = sim.base_ws
        conns = {
            "public_agg": await http.ws_connect(f"{base}/public/stream?streams=btcusdt@aggTrade"),
            "market_agg": await http.ws_connect(f"{base}/market/stream?streams=btcusdt@aggTrade"),
            "market_book": await http.ws_connect(
                f"{base}/market/stream?streams=btcusdt@bookTicker"
            ),
            "legacy": await http.ws_connect(
                f"{base}/stream?streams=btcusdt@aggTrade/btcusdt@bookTicker"
            ),
        }
        results = dict(zip(conns, await asyncio.gather(*(read_all(c) for c in conns.values()))))
        for ws in conns.values():
            await ws.close()
    assert results["public_agg"] == []
    assert results["market_book"] == []
    aggs = [json.loads(m)["data"] for m in results["market_agg"]]
    assert len(aggs) == len(market_trades) > 20000
    for agg, trade in zip(aggs, market_trades, strict=True):
        assert (agg["p"], agg["q"], agg["T"], agg["m"]) == (
            trade["p"],
            trade["q"],
            trade["T"],
            trade["m"],
        )
        assert agg["f"] == agg["l"] == trade["t"]
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
    # The legacy unrouted URL still gets /public data (bookTicker), never /market (aggTrade).
    legacy_streams = {json.loads(m)["stream"] for m in results["legacy"]}
    assert legacy_streams == {"btcusdt@bookTicker"}


async def test_mark_price_is_served_on_market_route_only(usdm2023_timeline: Timeline) -> None:
    expected = [
        e for e in tape_envelopes(usdm2023_timeline.tape_paths[0]) if b"@markPrice@1s" in e[:40]
    ]
    async with SimServer(usdm2023_timeline, **FAST) as sim, aiohttp.ClientSession() as http:
        streams = "btcusdt@markPrice@1s"
        market = await http.ws_connect(f"{sim.base_ws}/market/stream?streams={streams}")
        public = await http.ws_connect(f"{sim.base_ws}/public/stream?streams={streams}")
        got_market, got_public = await asyncio.gather(read_all(market), read_all(public))
    assert len(expected) == 99
    assert got_market == expected
    assert got_public == []


async def test_futures_depth_0ms_is_served_under_the_requested_depth_name(
    usdm_timeline: Timeline,
) -> None:
    recorded = [e for e in tape_envelopes(usdm_timeline.tape_paths[0]) if b"@depth@0ms" in e[:40]]
    async with SimServer(usdm_timeline, **FAST) as sim, aiohttp.ClientSession() as http:
        url = f"{sim.base_ws}/public/stream?streams=btcusdt@depth@100ms/btcusdt@depth"
        async with http.ws_connect(url) as ws:
            received = await read_all(ws)
    by_stream: dict[str, list[bytes]] = {}
    for message in received:
        by_stream.setdefault(json.loads(message)["stream"], []).append(message)
    assert set(by_stream) == {"btcusdt@depth@100ms", "btcusdt@depth"}
    for name, messages in by_stream.items():
        assert [data_part(m) for m in messages] == [data_part(e) for e in recorded], name


async def test_subscribe_protocol(usdm_timeline: Timeline) -> None:
    # USDⓈ-M allows 10 incoming messages a second; this test sends 7 (spot would cut it at 5).
    async with SimServer(usdm_timeline, speed=0, autostart=False) as sim:
        url = f"{sim.base_ws}/public/ws"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
            assert await ws.receive_json() == {"result": None, "id": 1}
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
            assert await ws.receive_json() == {"result": ["btcusdt@trade"], "id": 2}
            await ws.send_json({"method": "GET_PROPERTY", "params": ["combined"], "id": 3})
            assert await ws.receive_json() == {"result": False, "id": 3}
            await ws.send_json({"method": "SET_PROPERTY", "params": ["combined", True], "id": 4})
            assert await ws.receive_json() == {"result": None, "id": 4}
            await ws.send_json({"method": "NOPE", "id": 5})
            error = await ws.receive_json()
            assert error["id"] == 5 and error["error"]["code"] == 2
            sim.start()
            first = await ws.receive_json()
            assert first["stream"] == "btcusdt@trade" and first["data"]["e"] == "trade"
            await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 6})
            while (msg := await ws.receive_json()).get("id") != 6:
                assert msg["stream"] == "btcusdt@trade"  # frames queued before the reply
            assert msg == {"result": None, "id": 6}
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 7})
            assert await ws.receive_json() == {"result": [], "id": 7}


@pytest.mark.parametrize(("path", "limit"), [("/ws", 5), ("/public/ws", 10)])
async def test_incoming_message_limit(spot_timeline: Timeline, path: str, limit: int) -> None:
    async with SimServer(spot_timeline, autostart=False) as sim, aiohttp.ClientSession() as http:
        async with http.ws_connect(sim.base_ws + path) as ws:
            for i in range(limit):
                await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": i})
            for i in range(limit):
                assert await ws.receive_json() == {"result": [], "id": i}
            assert not ws.closed
        async with http.ws_connect(sim.base_ws + path) as ws:
            for i in range(limit + 1):
                await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": i})
            kinds = [msg.type async for msg in ws]
            assert aiohttp.WSMsgType.TEXT not in kinds[limit:]
            assert ws.close_code == 1008
        assert sim.status()["rate_limit_disconnects"] == 1


async def test_server_pings_and_disconnects_a_client_that_does_not_pong(
    spot_timeline: Timeline,
) -> None:
    # Pongs count against the 5 messages/s limit: keep pings under that rate.
    options = {"ping_interval_s": 0.25, "pong_timeout_s": 0.6, "autostart": False}
    async with SimServer(spot_timeline, **options) as sim, aiohttp.ClientSession() as http:
        polite = await http.ws_connect(f"{sim.base_ws}/ws", autoping=True)
        polite_messages: list[aiohttp.WSMessage] = []

        async def keep_reading() -> None:  # aiohttp answers pings inside receive()
            async for msg in polite:
                polite_messages.append(msg)

        polite_reader = asyncio.create_task(keep_reading())
        mute = await http.ws_connect(f"{sim.base_ws}/ws", autoping=False)
        pings = []
        async for msg in mute:  # ends when the server closes the connection
            if msg.type is aiohttp.WSMsgType.PING:
                pings.append(msg.data)
        assert len(pings) >= 1 and all(pings)  # pings carry a payload
        assert mute.close_code == 1008
        # The polite client answered every ping and outlived the mute one's pong deadline.
        assert not polite.closed
        await polite.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 1})
        while not polite_messages:
            await asyncio.sleep(0.01)
        assert json.loads(polite_messages[0].data) == {"result": [], "id": 1}
        await polite.close()
        await polite_reader
