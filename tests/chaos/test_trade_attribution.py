"""An order's fills read back from userTrades/myTrades are that order's trades only (by orderId).

Found by the USDⓈ-M soak (seed 303): two reduce-only stops with the same trigger fired together;
the manager completed the first one's fills from /fapi/v1/userTrades, which the simulator answers
with every trade of the symbol (it ignores orderId, unlike Binance). The other stop's trade was
folded and journaled as the first one's (`7-sl1` qty 1.62 FILLED 3.24), the second stayed NEW in
the journal, and a restart folded every trade of the symbol into it, corrupting the position
(exits for 4.825 against a position of 3.242). Expected fills come from the simulator's records.
"""

from __future__ import annotations

from decimal import Decimal

from chaos_rig import FrozenSpot

from engine.model import Side
from engine.orders import OrderFilled, OrderIntent, OrderStatus, OrderType


async def test_fills_read_back_are_the_orders_own_trades(frozen_usdm: FrozenSpot) -> None:
    manager = frozen_usdm.manager
    first = OrderIntent("t-tr-1", "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.5"))
    second = OrderIntent("t-tr-2", "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.3"))
    assert await manager.submit(first, 1) is OrderStatus.FILLED
    assert frozen_usdm.sim.trading is not None
    # the answer is lost: the manager finds the order by client id and reads its trades back
    frozen_usdm.sim.trading.faults.order_unknown()
    assert await manager.submit(second, 2) is OrderStatus.FILLED
    for cid in ("t-tr-1", "t-tr-2"):
        (record,) = frozen_usdm.on_sim(cid)
        folded = [(e.trade_id, e.quantity) for e in frozen_usdm.events
                  if isinstance(e, OrderFilled) and e.client_order_id == cid]  # fmt: skip
        assert folded == [(f.trade_id, f.qty) for f in record.fills], cid
