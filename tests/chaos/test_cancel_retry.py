"""A cancel refused before execution (-1021 twice, 429, 5xx) is sent again until the venue says the
order is closed: found by the kill/restart chaos test, where a dropped cancel left a spot OCO stop
resting after its position was sold (a trigger would have sold coins the engine did not hold).

The truth is read from the simulator's desk, never from the manager.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from engine.clock import LiveClock
from engine.journal import Journal
from engine.model import Market, Side
from engine.orders import OrderIntent, OrderStatus, OrderType
from exchange.binance.auth import BinanceKeys
from exchange.binance.order_manager import OrderManager, OrderManagerConfig
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline, load_timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET


@dataclass
class CancelRig:
    sim: SimServer
    manager: OrderManager

    def status_on_sim(self, client_id: str) -> list[str]:
        assert self.sim.trading is not None
        return [o.status for o in self.sim.trading.spot.orders.values()
                if o.client_order_id == client_id]  # fmt: skip

    async def resting_buy(self, client_id: str) -> OrderIntent:
        bids, _ = self.sim.book_levels("BTCUSDT", depth=1)
        price = (Decimal(str(bids[0][0])) - 2000).quantize(Decimal("0.01"))
        intent = OrderIntent(client_id, "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"),
                             price=price)  # fmt: skip
        assert await self.manager.submit(intent, 1) is OrderStatus.NEW
        assert self.status_on_sim(client_id) == ["NEW"]
        return intent


@pytest.fixture(scope="module")
def timeline(tapes: dict[str, Path]) -> Timeline:
    return load_timeline([tapes["spot_btcusdt"]])


@pytest.fixture
async def rig(timeline: Timeline, tmp_path: Path) -> AsyncIterator[CancelRig]:
    clock = LiveClock()
    async with (
        SimServer(timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        diffs = 0
        ready = asyncio.Event()

        def on_diff(symbol: str, final_update_id: int) -> None:
            nonlocal diffs
            diffs += 1
            if diffs == 30:  # a settled book, then a frozen market
                sim.pause()
                ready.set()

        sim.on_depth_sent(on_diff)
        sim.start()
        await ready.wait()
        rest = BinanceRest(Market.SPOT, BinanceEndpoints(sim.base_http, sim.base_ws), clock, http,
                           BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET), timeout_s=2.0)  # fmt: skip
        journal = Journal.open(tmp_path / "journal.sqlite")
        config = OrderManagerConfig(query_backoff_s=0.02, query_backoff_max_s=0.1, give_up_s=5.0)
        yield CancelRig(sim, OrderManager(rest, journal, clock, lambda event: None, config))
        journal.close()


async def test_cancel_refused_twice_for_its_timestamp_is_sent_again(rig: CancelRig) -> None:
    await rig.resting_buy("t-cx-ts")
    assert rig.sim.trading is not None
    rig.sim.trading.faults.timestamp_error(2)  # the cancel, then its re-signed resend
    assert await rig.manager.cancel("t-cx-ts") is OrderStatus.CANCELED
    assert rig.status_on_sim("t-cx-ts") == ["CANCELED"]
    assert rig.sim.trading.faults.timestamp_errors == 0


@pytest.mark.parametrize("status", [429, 503])
async def test_cancel_refused_by_rate_limit_or_5xx_is_sent_again(rig: CancelRig, status: int) -> None:
    await rig.resting_buy(f"t-cx-{status}")
    rig.sim.faults.http_error(status, 2)
    assert await rig.manager.cancel(f"t-cx-{status}") is OrderStatus.CANCELED
    assert rig.status_on_sim(f"t-cx-{status}") == ["CANCELED"]
    assert rig.sim.faults.http_errors == []


async def test_cancel_that_keeps_failing_reports_the_order_still_working(rig: CancelRig) -> None:
    await rig.resting_buy("t-cx-down")
    # every cancel refused; the status queries after the last attempt are answered
    rig.sim.faults.http_error(503, OrderManagerConfig().max_send_retries + 1)
    assert await rig.manager.cancel("t-cx-down") is OrderStatus.NEW
    assert rig.status_on_sim("t-cx-down") == ["NEW"]
