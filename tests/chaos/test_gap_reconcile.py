"""After a user-stream gap the venue reconciles its working orders by REST; a 429/5xx during that
reconciliation is retried, because Binance never replays the events of the gap (found by the
kill/restart chaos test: `user_event_reconcile_failed` after one 503, and the gap's events lost).
"""

from __future__ import annotations

import asyncio

from chaos_rig import FrozenSpot

from engine.model import Market
from engine.orders import OrderCanceled, OrderStatus
from exchange.binance.userstream import UserStreamGap, UserStreamItem, UserStreamLive
from exchange.binance.venue import BinanceVenue


async def test_order_closed_during_a_gap_is_reconciled_despite_a_503(
    frozen_spot: FrozenSpot,
) -> None:
    queue: asyncio.Queue[UserStreamItem] = asyncio.Queue()
    venue = BinanceVenue(Market.SPOT, ["BTCUSDT"], frozen_spot.rest, frozen_spot.manager,
                         frozen_spot.clock, queue)  # fmt: skip
    await frozen_spot.resting_buy("t-gap-1")
    await venue.on_user_item(UserStreamGap("disconnected", 0))
    assert frozen_spot.sim.trading is not None
    (record,) = frozen_spot.on_sim("t-gap-1")
    frozen_spot.sim.trading.spot.cancel(record)  # closed on the exchange while nobody listened
    assert record.status == "CANCELED"
    frozen_spot.sim.faults.http_error(503, 2)
    await venue.on_user_item(UserStreamLive("disconnected", 0))
    assert frozen_spot.manager.status("t-gap-1") is OrderStatus.CANCELED
    assert [type(e) for e in frozen_spot.events if e.client_order_id == "t-gap-1"][
        -1
    ] is OrderCanceled
    assert frozen_spot.sim.faults.http_errors == []
