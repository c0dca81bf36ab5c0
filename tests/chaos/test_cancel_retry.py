"""A cancel refused before execution (-1021 twice, 429, 5xx) is sent again until the venue says the
order is closed: found by the kill/restart chaos test, where a dropped cancel left a spot OCO stop
resting after its position was sold (a trigger would have sold coins the engine did not hold).

The truth is read from the simulator's desk, never from the manager.
"""

from __future__ import annotations

import pytest
from chaos_rig import FrozenSpot

from engine.orders import OrderStatus
from exchange.binance.order_manager import OrderManagerConfig


async def test_cancel_refused_twice_for_its_timestamp_is_sent_again(
    frozen_spot: FrozenSpot,
) -> None:
    await frozen_spot.resting_buy("t-cx-ts")
    assert frozen_spot.sim.trading is not None
    frozen_spot.sim.trading.faults.timestamp_error(2)  # the cancel, then its re-signed resend
    assert await frozen_spot.manager.cancel("t-cx-ts") is OrderStatus.CANCELED
    assert [o.status for o in frozen_spot.on_sim("t-cx-ts")] == ["CANCELED"]
    assert frozen_spot.sim.trading.faults.timestamp_errors == 0


@pytest.mark.parametrize("status", [429, 503])
async def test_cancel_refused_by_rate_limit_or_5xx_is_sent_again(
    frozen_spot: FrozenSpot, status: int
) -> None:
    cid = f"t-cx-{status}"
    await frozen_spot.resting_buy(cid)
    frozen_spot.sim.faults.http_error(status, 2)
    assert await frozen_spot.manager.cancel(cid) is OrderStatus.CANCELED
    assert [o.status for o in frozen_spot.on_sim(cid)] == ["CANCELED"]
    assert frozen_spot.sim.faults.http_errors == []


async def test_cancel_that_keeps_failing_reports_the_order_still_working(
    frozen_spot: FrozenSpot,
) -> None:
    await frozen_spot.resting_buy("t-cx-down")
    # every cancel attempt refused; the status query after the last one is answered
    frozen_spot.sim.faults.http_error(503, OrderManagerConfig().max_send_retries + 1)
    assert await frozen_spot.manager.cancel("t-cx-down") is OrderStatus.NEW
    assert [o.status for o in frozen_spot.on_sim("t-cx-down")] == ["NEW"]
