"""An unknown order is resolved whatever recvWindow is configured, up to the 60 000 ms allowed.

Binance (API reference §5.3) lets an order be declared absent only once its recvWindow has run
out relative to the timestamp it carried; with recvWindow 60 000 that is a minute after the send.
The manager must keep asking that long (and then some), not give up first and leave the order
UNKNOWN for good.

A minute of market time runs in a couple of wall seconds: the simulator and the client share a
clock `SPEED` times faster than the wall (the soak's ScaledClock), the replay runs at speed 1 on
it, so server time and the client's clock advance together. Real sockets on 127.0.0.1. The truth
(was the order placed, how often) is read from the simulator's desk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from engine.journal import Journal
from engine.model import Market, Side
from engine.orders import OrderEvent, OrderIntent, OrderRejected, OrderStatus, OrderType
from exchange.binance.auth import BinanceKeys
from exchange.binance.order_manager import OrderManager, OrderManagerConfig
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET
from exchange.sim.trading.orders import OrderRecord
from tests.soak.scaled_clock import ScaledClock

SPEED = 25.0  # 62 market seconds in about 2.5 wall seconds
RECV_WINDOW_MS = 60_000  # the most config.execution.recv_window_ms allows



@dataclass
class Rig:
    sim: SimServer
    rest: BinanceRest
    manager: OrderManager
    journal: Journal
    events: list[OrderEvent]

    def records(self, client_id: str) -> list[OrderRecord]:
        assert self.sim.trading is not None
        return [o for o in self.sim.trading.spot.orders.values() if o.client_order_id == client_id]


@pytest.fixture
async def rig(spot_timeline: Timeline, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ScaledClock(SPEED)
    async with (
        SimServer(spot_timeline, speed=1, clock=clock, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        booked = asyncio.Event()
        sim.on_depth_sent(lambda symbol, final_update_id: booked.set())
        sim.start()  # the market keeps moving: server time must advance with the clock
        await booked.wait()
        rest = BinanceRest(
            Market.SPOT,
            BinanceEndpoints(sim.base_http, sim.base_ws),
            clock,
            http,
            BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET),
            RECV_WINDOW_MS,
        )
        await rest.sync_time()
        journal = Journal.open(tmp_path / "journal.sqlite")
        events: list[OrderEvent] = []
        # the defaults, as live_start builds them, but for recvWindow
        manager = OrderManager(
            rest, journal, clock, events.append, OrderManagerConfig(recv_window_ms=RECV_WINDOW_MS)
        )
        yield Rig(sim, rest, manager, journal, events)
        journal.close()


def market_buy(cid: str) -> OrderIntent:
    return OrderIntent(cid, "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"))


async def test_an_answer_lost_before_execution_is_resent_after_a_60s_recv_window(rig: Rig) -> None:
    # A 503 "internal error" (-1001) served before the order reached the engine: the outcome looks
    # unknown, nothing was placed. Only after recvWindow + margin may the manager resend it.
    rig.sim.faults.http_error(503)
    status = await rig.manager.submit(market_buy("t-rw60-1"), 1)
    (record,) = rig.records("t-rw60-1")  # placed exactly once: by the resend
    assert record.status == "FILLED"
    assert status is OrderStatus.FILLED
    tracked = rig.manager.tracked("t-rw60-1")
    assert tracked is not None and tracked.sends == 2
    journaled = rig.journal.intent("t-rw60-1")
    assert journaled is not None and journaled.status is OrderStatus.UNKNOWN  # it was unknown


async def test_restart_declares_an_intent_that_never_left_absent_with_a_60s_recv_window(
    rig: Rig,
) -> None:
    # The previous process journaled the intent and died before sending it (or its request was
    # lost): after a restart it must be reported NOT_PLACED, not stay PENDING for good.
    rig.journal.record_intent(market_buy("t-rw60-2"), 1)
    await rig.manager.recover(3)
    assert rig.records("t-rw60-2") == []
    assert rig.events == [
        OrderRejected("BTCUSDT", "t-rw60-2", "NOT_PLACED", "absent after an unknown outcome", 3)
    ]
    assert rig.manager.status("t-rw60-2") is OrderStatus.REJECTED


async def test_restart_adopts_an_intent_that_was_placed_with_a_60s_recv_window(rig: Rig) -> None:
    order = market_buy("t-rw60-3")
    rig.journal.record_intent(order, 1)
    rig.journal.mark_unknown("t-rw60-3", 2, "crashed")
    await rig.rest.post(
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
         "newClientOrderId": "t-rw60-3"},
        signed=True, order=True,
    )  # fmt: skip
    await rig.manager.recover(3)
    (record,) = rig.records("t-rw60-3")
    assert rig.manager.status("t-rw60-3") is OrderStatus.FILLED
    filled = sum((f.qty for f in record.fills), Decimal(0))
    assert filled == record.orig_qty == Decimal("0.01")
