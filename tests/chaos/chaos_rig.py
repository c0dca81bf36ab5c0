"""An order manager on a frozen simulated market (fixtures frozen_spot, frozen_usdm) for focused cases."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.clock import LiveClock
from engine.model import Market, Side
from engine.orders import OrderEvent, OrderIntent, OrderStatus, OrderType
from exchange.binance.order_manager import OrderManager
from exchange.binance.rest import BinanceRest
from exchange.sim.server import SimServer
from exchange.sim.trading.orders import OrderRecord


@dataclass
class FrozenSpot:
    """A simulator paused on a settled book (spot unless said), a signed REST client, a manager."""

    sim: SimServer
    rest: BinanceRest
    manager: OrderManager
    clock: LiveClock
    events: list[OrderEvent]
    market: Market = Market.SPOT

    def on_sim(self, client_id: str) -> list[OrderRecord]:
        assert self.sim.trading is not None
        desk = self.sim.trading.spot if self.market is Market.SPOT else self.sim.trading.futures
        return [o for o in desk.orders.values() if o.client_order_id == client_id]

    async def resting_buy(self, client_id: str) -> OrderIntent:
        """Place a small LIMIT buy far below the bid (it rests); check the simulator took it."""
        bids, _ = self.sim.book_levels("BTCUSDT", depth=1)
        price = (Decimal(str(bids[0][0])) - 2000).quantize(Decimal("0.01"))
        intent = OrderIntent(client_id, "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"),
                             price=price)  # fmt: skip
        assert await self.manager.submit(intent, 1) is OrderStatus.NEW
        assert [o.status for o in self.on_sim(client_id)] == ["NEW"]
        return intent
