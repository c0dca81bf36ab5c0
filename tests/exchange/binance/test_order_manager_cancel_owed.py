"""A cancel whose outcome stays unknown is kept and sent again until the order is closed.

The case: every cancel attempt is refused (503), and the status check after the last one gets a
429 too. That cancel used to vanish (the 429 escaped, the command was logged and forgotten), so a
stale entry, or a stop left behind a closed position, kept resting on the exchange. Now it is
owed: the next retry (BinanceVenue's reconcile pass, or its stale-order tick) sends it again.

Real sockets on 127.0.0.1 against the simulator on a paused (still) market; what rests on the
exchange is read from the simulator's desk, never from the manager.
"""

from __future__ import annotations

import asyncio
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
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderIntent,
    OrderRole,
    OrderStatus,
    OrderType,
)
from exchange.binance.auth import BinanceKeys
from exchange.binance.order_manager import OrderManager, OrderManagerConfig
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.binance.userstream import UserStreamItem
from exchange.binance.venue import BinanceVenue, BinanceVenueConfig
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from exchange.sim.trading.orders import OrderRecord

D = Decimal
CONFIG = OrderManagerConfig(
    query_backoff_s=0.02, query_backoff_max_s=0.1, give_up_s=5.0, max_entry_age_s=0.0
)
# every cancel attempt refused, then the status check after the last one rate-limited
REFUSED_TO_THE_END = [503] * (CONFIG.max_send_retries + 1) + [429]



@dataclass
class Rig:
    sim: SimServer
    rest: BinanceRest
    manager: OrderManager
    venue: BinanceVenue
    events: list[OrderEvent]

    def on_sim(self, client_id: str) -> list[str]:
        assert self.sim.trading is not None
        orders: dict[int, OrderRecord] = self.sim.trading.spot.orders
        return [o.status for o in orders.values() if o.client_order_id == client_id]

    def refuse_to_the_end(self) -> None:
        for status in REFUSED_TO_THE_END:
            self.sim.faults.http_error(status)

    def bid(self) -> Decimal:
        bids, _ = self.sim.book_levels("BTCUSDT", depth=1)
        return D(str(bids[0][0]))

    async def resting_buy(self, cid: str) -> None:
        price = (self.bid() - 2000).quantize(D("0.01"))
        intent = OrderIntent(cid, "BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.001"), price=price)
        assert await self.manager.submit(intent, 1) is OrderStatus.NEW
        assert self.on_sim(cid) == ["NEW"]


@pytest.fixture
async def rig(spot_timeline: Timeline, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = LiveClock()
    async with (
        SimServer(spot_timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        await pause_after_diffs(sim, 30)  # a settled book, then a still market
        rest = BinanceRest(Market.SPOT, BinanceEndpoints(sim.base_http, sim.base_ws), clock, http,
                           BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET), timeout_s=2.0)  # fmt: skip
        await rest.sync_time()
        journal = Journal.open(tmp_path / "journal.sqlite")
        holder: list[BinanceVenue] = []
        manager = OrderManager(rest, journal, clock, lambda e: holder[0].emit(e), CONFIG)
        queue: asyncio.Queue[UserStreamItem] = asyncio.Queue()
        # no periodic pass of its own: the test says when the venue reconciles
        venue_config = BinanceVenueConfig(reconcile_interval_s=0, stale_check_s=3600)
        venue = BinanceVenue(Market.SPOT, ["BTCUSDT"], rest, manager, clock, queue, venue_config)
        holder.append(venue)
        events: list[OrderEvent] = []
        venue.set_listener(events.extend)
        yield Rig(sim, rest, manager, venue, events)
        journal.close()


async def test_stale_entries_end_cancelled_though_a_status_check_was_rate_limited(rig: Rig) -> None:
    await rig.resting_buy("t-ow-a")
    await rig.resting_buy("t-ow-b")
    rig.refuse_to_the_end()  # hits t-ow-a's cancel; t-ow-b's comes after
    assert await rig.manager.cancel_stale() == ["t-ow-a", "t-ow-b"]
    assert rig.sim.faults.http_errors == []  # every refusal was served
    assert rig.on_sim("t-ow-a") == ["NEW"]  # still resting: the cancel never got through
    assert rig.on_sim("t-ow-b") == ["CANCELED"]  # one refused cancel does not stop the others
    assert rig.manager.cancels_owed() == ["t-ow-a"]
    assert await rig.manager.retry_cancels() == ["t-ow-a"]
    assert rig.on_sim("t-ow-a") == ["CANCELED"]
    assert rig.manager.status("t-ow-a") is OrderStatus.CANCELED
    assert rig.manager.cancels_owed() == []
    assert await rig.manager.retry_cancels() == []
    canceled = [e.client_order_id for e in rig.events if isinstance(e, OrderCanceled)]
    assert sorted(canceled) == ["t-ow-a", "t-ow-b"]  # each reported once


async def test_a_stop_left_behind_a_closed_position_is_cancelled_by_the_next_reconcile(
    rig: Rig,
) -> None:
    run = asyncio.create_task(rig.venue.run())
    try:
        qty = D("0.01")
        entry = OrderIntent("t-ow-en", "BTCUSDT", Side.BUY, OrderType.MARKET, qty,
                            role=OrderRole.ENTRY)  # fmt: skip
        stop = OrderIntent("t-ow-sl", "BTCUSDT", Side.SELL, OrderType.STOP_MARKET, qty,
                           stop_price=(rig.bid() - 2000).quantize(D("0.01")),
                           role=OrderRole.STOP_LOSS)  # fmt: skip
        exit_ = OrderIntent("t-ow-ex", "BTCUSDT", Side.SELL, OrderType.MARKET, qty,
                            role=OrderRole.EXIT)  # fmt: skip
        for intent in (entry, stop, exit_):  # a position, its stop, then the position closed
            rig.venue.submit(intent, 1)
        assert await rig.venue.drain()
        on_sim = [rig.on_sim(i.client_order_id) for i in (entry, stop, exit_)]
        assert on_sim == [["FILLED"], ["NEW"], ["FILLED"]]
        rig.refuse_to_the_end()
        rig.venue.cancel("BTCUSDT", "t-ow-sl", 1)  # the stop must go: nothing left to protect
        assert await rig.venue.drain()
        assert rig.sim.faults.http_errors == []
        assert rig.on_sim("t-ow-sl") == ["NEW"]
        assert [o.client_order_id for o in rig.venue.open_orders()] == ["t-ow-sl"]
        assert await rig.venue.reconcile_open_orders() == []
        assert rig.on_sim("t-ow-sl") == ["CANCELED"]
        assert rig.venue.open_orders() == []
        stop_events = [type(e) for e in rig.events if e.client_order_id == "t-ow-sl"]
        assert stop_events == [OrderAccepted, OrderCanceled]
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
