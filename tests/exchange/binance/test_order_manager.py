"""OrderManager against the loopback simulator with trading on, replaying the 2024-08-08 BTCUSDT tapes.

Expected events are read from the simulator's own order records (its desk), never from the
manager; the "sent once" checks count the simulator's orders carrying the client id.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from sim_pause import pause_after_diffs

from engine.clock import LiveClock
from engine.journal import Journal
from engine.model import Market, Side
from engine.orders import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    OrderStatus,
    OrderType,
    SubmitOrderList,
)
from exchange.binance.auth import BinanceKeys
from exchange.binance.order_manager import OrderManager, OrderManagerConfig
from exchange.binance.orders import parse_execution_report
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from exchange.sim.trading.orders import OrderRecord


@dataclass
class Rig:
    sim: SimServer
    manager: OrderManager
    journal: Journal
    events: list[OrderEvent]
    market: Market
    rest: BinanceRest

    def records(self, client_id: str) -> list[OrderRecord]:
        assert self.sim.trading is not None
        desk = self.sim.trading.spot if self.market is Market.SPOT else self.sim.trading.futures
        return [o for o in desk.orders.values() if o.client_order_id == client_id]

    def algos(self, client_id: str) -> list:
        assert self.sim.trading is not None
        return [a for a in self.sim.trading.futures.algos.values() if a.client_algo_id == client_id]

    def best(self) -> tuple[Decimal, Decimal]:
        bids, asks = self.sim.book_levels("BTCUSDT", depth=1)
        return Decimal(str(bids[0][0])), Decimal(str(asks[0][0]))


async def _rig(
    timeline: Timeline,
    market: Market,
    tmp_path: Path,
    config: OrderManagerConfig,
    timeout_s: float,
    recv_window_ms: int = 5000,
) -> AsyncIterator[Rig]:
    clock = LiveClock()
    async with (
        SimServer(timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        await pause_after_diffs(sim, 30)
        rest = BinanceRest(
            market,
            BinanceEndpoints(sim.base_http, sim.base_ws, market is Market.USDM),
            clock,
            http,
            BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET),
            recv_window_ms,
            timeout_s=timeout_s,
        )
        journal = Journal.open(tmp_path / "journal.sqlite")
        events: list[OrderEvent] = []
        manager = OrderManager(rest, journal, clock, events.append, config)
        yield Rig(sim, manager, journal, events, market, rest)
        journal.close()


FAST = OrderManagerConfig(query_backoff_s=0.02, query_backoff_max_s=0.1, give_up_s=10.0)


@pytest.fixture
async def spot(spot_timeline: Timeline, tmp_path: Path) -> AsyncIterator[Rig]:
    config = OrderManagerConfig(
        query_backoff_s=0.02, query_backoff_max_s=0.1, give_up_s=10.0, max_entry_age_s=0.0
    )
    async for rig in _rig(spot_timeline, Market.SPOT, tmp_path, config, timeout_s=0.5):
        yield rig


@pytest.fixture
async def usdm(usdm_timeline: Timeline, tmp_path: Path) -> AsyncIterator[Rig]:
    async for rig in _rig(usdm_timeline, Market.USDM, tmp_path, FAST, timeout_s=0.5):
        yield rig


def expected_events(record: OrderRecord, market: Market) -> list[OrderEvent]:
    """Accepted + one fill per record fill, from the simulator's record alone."""
    events: list[OrderEvent] = [
        OrderAccepted(record.symbol, record.client_order_id, str(record.order_id), 0)
    ]
    total = Decimal(0)
    for fill in record.fills:
        total += fill.qty
        events.append(
            OrderFilled(
                record.symbol, record.client_order_id, fill.trade_id, Side(record.side),
                fill.price, fill.qty, fill.commission, fill.commission_asset,
                Liquidity.MAKER if fill.maker else Liquidity.TAKER, 0,
                total == record.orig_qty,
            )
        )  # fmt: skip
    return events


def without_ts(events: list[OrderEvent]) -> list[OrderEvent]:
    return [dataclasses.replace(e, ts_event_ms=0) for e in events]


def market_buy(cid: str, qty: str) -> OrderIntent:
    return OrderIntent(cid, "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal(qty))


async def test_spot_market_order_events_equal_sim_records(spot: Rig) -> None:
    status = await spot.manager.submit(market_buy("t-mkt-1", "0.5"), 1)
    (record,) = spot.records("t-mkt-1")
    assert record.status == "FILLED" and len(record.fills) >= 1
    assert status is OrderStatus.FILLED
    assert without_ts(spot.events) == expected_events(record, Market.SPOT)


async def test_spot_resting_limit_accepted_then_stale_entry_cancelled(spot: Rig) -> None:
    bid, _ = spot.best()
    price = (bid - 2000).quantize(Decimal("0.01"))
    intent = OrderIntent(
        "t-lim-1", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"), price=price
    )
    assert await spot.manager.submit(intent, 1) is OrderStatus.NEW
    (record,) = spot.records("t-lim-1")
    assert spot.events == [
        OrderAccepted("BTCUSDT", "t-lim-1", str(record.order_id), record.time_ms)
    ]
    assert await spot.manager.cancel_stale() == ["t-lim-1"]
    assert record.status == "CANCELED"
    assert spot.manager.status("t-lim-1") is OrderStatus.CANCELED
    assert [type(e) for e in spot.events] == [OrderAccepted, OrderCanceled]


async def test_stale_cancel_skips_protective_orders(spot: Rig) -> None:
    bid, _ = spot.best()
    price = (bid - 2000).quantize(Decimal("0.01"))
    intent = OrderIntent(
        "t-lim-2", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"), price=price,
        role=OrderRole.EXIT,
    )  # fmt: skip
    await spot.manager.submit(intent, 1)
    assert await spot.manager.cancel_stale() == []
    assert spot.records("t-lim-2")[0].status == "NEW"


async def test_spot_order_unknown_is_not_sent_twice_and_resolves(spot: Rig) -> None:
    assert spot.sim.trading is not None
    spot.sim.trading.faults.order_unknown()
    status = await spot.manager.submit(market_buy("t-unk-1", "0.2"), 1)
    records = spot.records("t-unk-1")
    assert len(records) == 1  # sent once
    assert status is OrderStatus.FILLED
    journaled = spot.journal.intent("t-unk-1")
    assert journaled is not None and journaled.status is OrderStatus.UNKNOWN
    # the fills were recovered from myTrades: same trade ids, prices, fees as the sim's record
    assert without_ts(spot.events) == expected_events(records[0], Market.SPOT)


async def test_spot_order_timeout_is_not_sent_twice(spot: Rig) -> None:
    assert spot.sim.trading is not None
    spot.sim.trading.faults.order_timeout(seconds=2.0)
    status = await spot.manager.submit(market_buy("t-tmo-1", "0.1"), 1)
    records = spot.records("t-tmo-1")
    assert len(records) == 1
    assert status is OrderStatus.FILLED
    journaled = spot.journal.intent("t-tmo-1")
    assert journaled is not None and journaled.status is OrderStatus.UNKNOWN  # it did time out
    assert without_ts(spot.events) == expected_events(records[0], Market.SPOT)


async def test_duplicate_ack_adopts_existing_order(spot: Rig) -> None:
    assert spot.sim.trading is not None
    spot.sim.trading.faults.duplicate_ack()
    bid, _ = spot.best()
    intent = OrderIntent(
        "t-dup-1", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"),
        price=(bid - 1000).quantize(Decimal("0.01")),
    )  # fmt: skip
    assert await spot.manager.submit(intent, 1) is OrderStatus.NEW
    (record,) = spot.records("t-dup-1")
    assert spot.sim.trading.faults.duplicate_acks == 0
    assert [(type(e), getattr(e, "venue_order_id", None)) for e in spot.events] == [
        (OrderAccepted, str(record.order_id))
    ]


async def test_timestamp_error_on_placement_resyncs_and_places_once(spot: Rig) -> None:
    assert spot.sim.trading is not None
    spot.sim.trading.faults.timestamp_error()
    status = await spot.manager.submit(market_buy("t-ts-1", "0.05"), 1)
    (record,) = spot.records("t-ts-1")
    assert status is OrderStatus.FILLED
    assert spot.sim.trading.faults.timestamp_errors == 0  # the -1021 was served
    assert without_ts(spot.events) == expected_events(record, Market.SPOT)


async def test_filter_rejection_carries_filter_name(spot: Rig) -> None:
    bid, _ = spot.best()
    intent = OrderIntent(
        "t-rej-1", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"),
        price=bid - Decimal("1000.001"),  # off the 0.01 tick
    )  # fmt: skip
    assert await spot.manager.submit(intent, 1) is OrderStatus.REJECTED
    (event,) = spot.events
    assert isinstance(event, OrderRejected)
    assert event.reason == "PRICE_FILTER"
    assert spot.records("t-rej-1") == []


async def test_fills_deduplicated_when_the_same_report_arrives_again(spot: Rig) -> None:
    await spot.manager.submit(market_buy("t-dd-1", "0.3"), 1)
    count = len(spot.events)
    await spot.manager.refresh("t-dd-1")  # query + myTrades again: every trade already known
    await spot.manager.refresh("t-dd-1")
    assert len(spot.events) == count
    (record,) = spot.records("t-dd-1")
    fills = [e for e in spot.events if isinstance(e, OrderFilled)]
    assert sorted(f.trade_id for f in fills) == sorted(f.trade_id for f in record.fills)


async def test_usdm_market_order_fills_from_user_trades(usdm: Rig) -> None:
    status = await usdm.manager.submit(market_buy("t-fm-1", "0.01"), 1)
    (record,) = usdm.records("t-fm-1")
    assert status is OrderStatus.FILLED
    assert without_ts(usdm.events) == expected_events(record, Market.USDM)


async def test_usdm_algo_stop_with_unknown_outcome_placed_once(usdm: Rig) -> None:
    assert usdm.sim.trading is not None
    usdm.sim.trading.faults.order_unknown()
    _, ask = usdm.best()
    intent = OrderIntent(
        "t-algo-1", "BTCUSDT", Side.BUY, OrderType.STOP_MARKET, Decimal("0.01"),
        role=OrderRole.STOP_LOSS, stop_price=(ask + 3000).quantize(Decimal("0.1")),
    )  # fmt: skip
    assert await usdm.manager.submit(intent, 1) is OrderStatus.NEW
    (algo,) = usdm.algos("t-algo-1")
    assert algo.status == "NEW" and algo.trigger_price == intent.stop_price
    assert [(type(e), getattr(e, "venue_order_id", None)) for e in usdm.events] == [
        (OrderAccepted, str(algo.algo_id))
    ]
    assert await usdm.manager.cancel("t-algo-1") is OrderStatus.CANCELED
    assert algo.status == "CANCELED"


async def test_unknown_outcome_of_an_order_never_placed_resends_with_the_same_id(
    spot_timeline: Timeline, tmp_path: Path
) -> None:
    # A 503 served before the order reaches the matching engine: the outcome looks unknown but
    # nothing was placed. Only after recvWindow + margin may the manager resend, with the same id.
    config = OrderManagerConfig(
        recv_window_ms=300, absent_margin_ms=100, query_backoff_s=0.02, query_backoff_max_s=0.05
    )
    async for rig in _rig(spot_timeline, Market.SPOT, tmp_path, config, 0.5, recv_window_ms=300):
        await rig.rest.sync_time()  # the fault must hit the placement, not the /time call
        rig.sim.faults.http_error(503)
        status = await rig.manager.submit(market_buy("t-abs-1", "0.05"), 1)
        (record,) = rig.records("t-abs-1")
        assert status is OrderStatus.FILLED
        tracked = rig.manager.tracked("t-abs-1")
        assert tracked is not None and tracked.sends == 2
        assert without_ts(rig.events) == expected_events(record, Market.SPOT)


def oco_legs(rig: Rig, list_id: str) -> SubmitOrderList:
    bid, ask = rig.best()
    tp = OrderIntent(
        f"{list_id}-tp", "BTCUSDT", Side.SELL, OrderType.LIMIT, Decimal("0.01"),
        price=(ask + 1000).quantize(Decimal("0.01")), role=OrderRole.TAKE_PROFIT,
    )  # fmt: skip
    sl = OrderIntent(
        f"{list_id}-sl", "BTCUSDT", Side.SELL, OrderType.STOP_LIMIT, Decimal("0.01"),
        price=(bid - 1010).quantize(Decimal("0.01")),
        stop_price=(bid - 1000).quantize(Decimal("0.01")), role=OrderRole.STOP_LOSS,
    )  # fmt: skip
    return SubmitOrderList(f"{list_id}-ls", (tp, sl), 1)


@pytest.mark.parametrize("fault", [None, "order_unknown"])
async def test_spot_oco_both_legs_accepted_once(spot: Rig, fault: str | None) -> None:
    assert spot.sim.trading is not None
    if fault:
        spot.sim.trading.faults.order_unknown()
    command = oco_legs(spot, "t-oco")
    assert await spot.manager.submit_list(command) == [OrderStatus.NEW, OrderStatus.NEW]
    expected = set()
    for leg in command.orders:
        (record,) = spot.records(leg.client_order_id)
        assert record.status == "NEW" and record.order_list_id > 0
        expected.add((leg.client_order_id, str(record.order_id)))
    accepted = {(e.client_order_id, e.venue_order_id) for e in spot.events}
    assert accepted == expected and len(spot.events) == 2
    journaled = [spot.journal.intent(leg.client_order_id) for leg in command.orders]
    want = OrderStatus.UNKNOWN if fault else OrderStatus.PENDING
    assert [j.status for j in journaled if j is not None] == [want, want]


async def test_recover_resolves_an_intent_left_unknown_by_a_crash(spot: Rig) -> None:
    # The previous process journaled the intent, sent it, and died before reading the answer.
    order = market_buy("t-rec-1", "0.05")
    spot.journal.record_intent(order, 1)
    spot.journal.mark_unknown("t-rec-1", 2, "crashed")
    await spot.rest.post(
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.05",
         "newClientOrderId": "t-rec-1"},
        signed=True, order=True,
    )  # fmt: skip
    await spot.manager.recover(3)
    (record,) = spot.records("t-rec-1")
    assert spot.manager.status("t-rec-1") is OrderStatus.FILLED
    assert without_ts(spot.events) == expected_events(record, Market.SPOT)


async def test_usdm_algo_order_timeout_placed_once(usdm: Rig) -> None:
    assert usdm.sim.trading is not None
    usdm.sim.trading.faults.order_timeout(seconds=2.0)
    bid, _ = usdm.best()
    intent = OrderIntent(
        "t-algo-2", "BTCUSDT", Side.SELL, OrderType.TRAILING_STOP_MARKET, Decimal("0.01"),
        role=OrderRole.TRAILING_STOP, callback_rate_pct=Decimal(1),
        stop_price=(bid - 3000).quantize(Decimal("0.1")),
    )  # fmt: skip
    assert await usdm.manager.submit(intent, 1) is OrderStatus.NEW
    (algo,) = usdm.algos("t-algo-2")
    assert (algo.order_type, algo.callback_rate) == ("TRAILING_STOP_MARKET", Decimal(1))
    journaled = usdm.journal.intent("t-algo-2")
    assert journaled is not None and journaled.status is OrderStatus.UNKNOWN
    assert [(type(e), getattr(e, "venue_order_id", None)) for e in usdm.events] == [
        (OrderAccepted, str(algo.algo_id))
    ]


async def test_usdm_triggered_algo_reports_the_fills_of_the_order_it_became(usdm: Rig) -> None:
    # A stop a few ticks from the market: resume the replay until the simulator triggers it.
    _, ask = usdm.best()
    intent = OrderIntent(
        "t-algo-3", "BTCUSDT", Side.BUY, OrderType.STOP_MARKET, Decimal("0.01"),
        role=OrderRole.STOP_LOSS, stop_price=(ask + Decimal("0.5")).quantize(Decimal("0.1")),
    )  # fmt: skip
    assert await usdm.manager.submit(intent, 1) is OrderStatus.NEW
    (algo,) = usdm.algos("t-algo-3")
    usdm.sim.resume()
    for _ in range(400):
        if algo.actual_order_id is not None and algo.status == "FINISHED":
            break
        await asyncio.sleep(0.025)
    usdm.sim.pause()
    if algo.actual_order_id is None:
        pytest.skip("the replayed tape did not reach the trigger")
    assert await usdm.manager.refresh("t-algo-3") is OrderStatus.FILLED
    assert usdm.sim.trading is not None
    order = usdm.sim.trading.futures.orders[algo.actual_order_id]
    expected = [
        OrderAccepted("BTCUSDT", "t-algo-3", str(algo.algo_id), 0),
        *expected_events(order, Market.USDM)[1:],
    ]
    assert without_ts(usdm.events) == [
        dataclasses.replace(e, client_order_id="t-algo-3") for e in expected
    ]


async def test_recover_reports_an_intent_that_never_reached_the_venue(
    spot_timeline: Timeline, tmp_path: Path
) -> None:
    config = OrderManagerConfig(
        recv_window_ms=300, absent_margin_ms=100, query_backoff_s=0.02, query_backoff_max_s=0.05
    )
    async for rig in _rig(spot_timeline, Market.SPOT, tmp_path, config, 0.5, recv_window_ms=300):
        rig.journal.record_intent(market_buy("t-rec-2", "0.05"), 1)
        rig.journal.mark_unknown("t-rec-2", 2, "crashed")
        await rig.manager.recover(3)
        assert rig.records("t-rec-2") == []
        assert rig.events == [
            OrderRejected("BTCUSDT", "t-rec-2", "NOT_PLACED", "absent after an unknown outcome", 3)
        ]
        assert rig.manager.status("t-rec-2") is OrderStatus.REJECTED


async def test_user_stream_reports_add_no_duplicate_events(spot: Rig) -> None:
    # The same fills reach the manager twice: in the placement answer and on the user stream.
    assert spot.sim.trading is not None
    reports: list[dict] = []
    spot.sim.trading.spot.listeners.append(reports.append)
    bid, _ = spot.best()
    resting = OrderIntent(
        "t-us-1", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"),
        price=(bid - 1000).quantize(Decimal("0.01")),
    )  # fmt: skip
    await spot.manager.submit(resting, 1)
    await spot.manager.submit(market_buy("t-us-2", "0.2"), 1)
    await spot.manager.cancel("t-us-1")
    emitted = list(spot.events)
    executions = [r for r in reports if r["e"] == "executionReport"]
    assert {r["x"] for r in executions} >= {"NEW", "TRADE", "CANCELED"}
    for report in executions:
        assert spot.manager.apply(parse_execution_report(report)) == []
    assert spot.events == emitted
