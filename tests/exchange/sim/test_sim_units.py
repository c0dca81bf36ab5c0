"""Pure parts of the simulator on hand-made inputs: grids, routing, its own book, fault schedules."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from engine.model import Market
from exchange.sim.book import SimBook
from exchange.sim.connection import Route, resolve_stream
from exchange.sim.exchange_info import infer_increment, infer_step, split_symbol
from exchange.sim.faults import FaultError
from exchange.sim.server import SimServer
from exchange.sim.timeline import DepthDiffInfo, Snapshot, Timeline


def diff(first: int, final: int, bids=(), asks=(), prev: int | None = None) -> DepthDiffInfo:
    return DepthDiffInfo(
        first, final, prev, [list(b) for b in bids], [list(a) for a in asks], 0, None
    )


def snapshot(market: Market, last_id: int, bids, asks) -> Snapshot:
    return Snapshot(0, market, "XYZUSDT", last_id, [list(b) for b in bids], [list(a) for a in asks],
                    None, None)  # fmt: skip


def test_grid_inference() -> None:
    assert infer_increment(["61800.20", "61800.30", "5000.00"]) == Decimal("0.1")
    assert infer_increment(["0.25", "0.75", "1.50"]) == Decimal("0.25")
    assert infer_increment(["0.000", "0"]) is None
    # one dust quantity among many on the 0.00001 grid does not make the step 0.000001
    assert infer_step(["1.54698000"] * 999 + ["0.00000600"]) == Decimal("0.00001")
    assert infer_step(["3", "12"]) == Decimal(1)
    assert split_symbol("ETHFDUSD") == ("ETH", "FDUSD")
    assert split_symbol("BTCUSDT") == ("BTC", "USDT")


def test_routing_table() -> None:
    streams = frozenset(
        {
            (Market.USDM, "btcusdt@depth@0ms"),
            (Market.USDM, "btcusdt@aggTrade"),
            (Market.USDM, "btcusdt@bookTicker"),
            (Market.SPOT, "ethusdt@trade"),
            (Market.SPOT, "ethusdt@depth@100ms"),
        }
    )
    markets = {"BTCUSDT": {Market.USDM}, "ETHUSDT": {Market.SPOT}}
    timeline = Timeline([], {}, markets, streams, [])
    usdm_depth = (Market.USDM, "btcusdt@depth@0ms")
    cases = {
        (Route.PUBLIC, "btcusdt@depth@100ms"): usdm_depth,
        (Route.PUBLIC, "btcusdt@depth"): usdm_depth,
        (Route.PUBLIC, "btcusdt@bookTicker"): (Market.USDM, "btcusdt@bookTicker"),
        (Route.PUBLIC, "btcusdt@aggTrade"): None,
        (Route.MARKET, "btcusdt@aggTrade"): (Market.USDM, "btcusdt@aggTrade"),
        (Route.MARKET, "btcusdt@depth@100ms"): None,
        (Route.UNROUTED, "btcusdt@depth@100ms"): usdm_depth,  # legacy futures: public only
        (Route.UNROUTED, "btcusdt@aggTrade"): None,
        (Route.LEGACY_FUTURES, "btcusdt@bookTicker"): (Market.USDM, "btcusdt@bookTicker"),
        (Route.UNROUTED, "ethusdt@trade"): (Market.SPOT, "ethusdt@trade"),
        (Route.UNROUTED, "ethusdt@depth"): (Market.SPOT, "ethusdt@depth@100ms"),
        (Route.PUBLIC, "ethusdt@trade"): None,
        (Route.UNROUTED, "ethusdt@depth5@100ms"): None,  # partial depth is not recorded
    }
    for (route, name), expected in cases.items():
        assert resolve_stream(route, name, timeline) == expected, (route, name)


def test_spot_book_syncs_by_the_spot_rule_and_resyncs_after_a_tape_gap() -> None:
    early = snapshot(Market.SPOT, 10, [("100.0", "1.0")], [("101.0", "2.0")])
    later = snapshot(Market.SPOT, 30, [("99.0", "5.0")], [("102.0", "6.0")])
    book = SimBook(Market.SPOT, [early, later])
    assert book.depth(None) == (10, [["100.0", "1.0"]], [["101.0", "2.0"]])  # served as recorded
    assert not book.apply(diff(5, 10, bids=[("100.0", "9.0")]))  # u <= lastUpdateId: before it
    assert book.apply(diff(11, 12, bids=[("100.0", "0.000")], asks=[("101.5", "3.0")]))
    assert book.levels() == (
        [],
        [(Decimal("101.0"), Decimal("2.0")), (Decimal("101.5"), Decimal("3.0"))],
    )
    assert not book.apply(diff(12, 12))  # already applied
    assert book.apply(diff(13, 14, bids=[("100.5", "1.0")]))
    assert book.served_update_id == 14
    assert not book.apply(diff(20, 25))  # the tape skipped 15..19; the later snapshot is ahead
    assert book.tape_gaps == 1 and not book.synced
    assert book.apply(diff(26, 31, asks=[("102.0", "7.0")]))  # brackets 30 + 1
    assert book.depth(None) == (31, [["99.0", "5.0"]], [["102.0", "7.0"]])


def test_futures_book_uses_pu_and_the_non_plus_one_bracket() -> None:
    snap = snapshot(Market.USDM, 100, [("10.0", "1")], [("11.0", "1")])
    book = SimBook(Market.USDM, [snap])
    assert not book.apply(diff(90, 99, prev=80))  # u < lastUpdateId
    assert book.apply(diff(95, 100, bids=[("10.0", "2")], prev=94))  # U <= 100 <= u
    assert book.apply(diff(101, 105, asks=[("11.0", "0.000")], prev=100))
    assert book.levels() == ([(Decimal("10.0"), Decimal(2))], [])
    assert not book.apply(diff(101, 105, prev=100))  # a duplicate of the last one


def test_book_without_a_recorded_snapshot_is_built_from_the_diffs() -> None:
    book = SimBook(Market.SPOT, [])
    assert book.served_update_id is None
    assert book.apply(diff(1, 3, bids=[("5.0", "1.0")]))
    assert book.depth(5) == (3, [["5.0", "1.0"]], [])


async def test_fault_requests_are_validated(spot_tape: Path) -> None:
    async with SimServer([spot_tape], autostart=False) as sim:
        with pytest.raises(FaultError):
            sim.faults.apply("earthquake")
        with pytest.raises(FaultError):
            sim.faults.gap("BTCUSDT", n=0)
        with pytest.raises(FaultError):
            sim.faults.http_error(status=200)
        with pytest.raises(FaultError):
            sim.faults.schedule_random(5, kinds=("gap", "teleport"))
        assert sim.faults.injected == {}


async def test_control_message_errors(spot_tape: Path) -> None:
    async with (
        SimServer([spot_tape], autostart=False) as sim,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{sim.base_ws}/ws") as ws,
    ):
        await ws.send_str("{not json")
        assert (await ws.receive_json())["error"]["code"] == 3
        await ws.send_json({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 1})
        assert await ws.receive_json() == {
            "error": {"code": 2, "msg": "Invalid request: params must be a list of stream names"},
            "id": 1,
        }
        await ws.send_json({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 2})
        assert (await ws.receive_json())["error"]["code"] == 1
        await ws.send_json({"method": "GET_PROPERTY", "params": ["colour"], "id": 3})
        assert (await ws.receive_json())["error"]["code"] == 0
        await asyncio.sleep(0)


async def test_capture_folders_sync_every_symbol(shared_data: Path) -> None:
    for folder in ("2021-04-05_spot_10sym", "2021-04-05_usdm_5sym"):
        async with SimServer([shared_data / "binance-captures-2021" / folder], speed=0) as sim:
            sim.start()
            await sim.wait_finished()
            books = sim.status()["books"]
            assert len(books) in (10, 5)
            assert all(b["synced"] and b["tape_gaps"] == 0 for b in books.values()), books
