"""The spot user stream resyncs server time when its subscription is refused with -1021.

The simulator's server time is the replay's (August 2024), so a client that never measured the
offset stamps requests years ahead: Binance (and the simulator) answer -1021. A stream that only
backs off and re-signs with the same offset is refused forever; the subscription must come up
after one /time round trip. Real sockets on 127.0.0.1, the simulator's WS API and REST.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
import pytest
from sim_pause import pause_after_diffs

from engine.clock import LiveClock
from engine.model import Market
from engine.orders import OrderFilled
from exchange.binance.auth import BinanceKeys
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.binance.user_events import UserEventFold
from exchange.binance.userstream import (
    SpotUserStream,
    UserStreamGap,
    UserStreamItem,
    UserStreamLive,
)
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET

WAIT_S = 10.0



@dataclass
class Unsynced:
    sim: SimServer
    http: aiohttp.ClientSession
    rest: BinanceRest  # its server-time offset was never measured
    queue: asyncio.Queue[UserStreamItem]

    def stream(
        self,
        timestamp_ms: Callable[[], int] | None = None,
        sync_time: Callable[[], Awaitable[object]] | None = None,
    ) -> SpotUserStream:
        extra = {} if sync_time is None else {"sync_time": sync_time}  # the wiring as it is
        return SpotUserStream(
            f"{self.sim.base_ws}/ws-api/v3",
            BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET),
            timestamp_ms or self.rest.timestamp_ms,
            self.queue,
            LiveClock(),
            self.http,
            recv_window_ms=5000,
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
            **extra,
        )


@pytest.fixture
async def unsynced(spot_timeline: Timeline) -> AsyncIterator[Unsynced]:
    async with (
        SimServer(spot_timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        await pause_after_diffs(sim, 50)  # a book to trade against, then a still market
        endpoints = BinanceEndpoints(sim.base_http, sim.base_ws)
        keys = BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET)
        rest = BinanceRest(Market.SPOT, endpoints, LiveClock(), http, keys)
        yield Unsynced(sim, http, rest, asyncio.Queue())


def stamped_outside_the_window(sim: SimServer, rest: BinanceRest) -> bool:
    """The simulator's own acceptance rule (1 s ahead, recvWindow behind) says -1021."""
    skew_ms = rest.timestamp_ms() - sim.server_time_ms()
    return skew_ms >= 1000 or skew_ms < -5000


async def next_live(queue: asyncio.Queue[UserStreamItem]) -> UserStreamLive:
    while True:
        item = await asyncio.wait_for(queue.get(), WAIT_S)
        if isinstance(item, UserStreamLive):
            return item


async def test_subscription_refused_for_its_timestamp_resyncs_and_comes_up(
    unsynced: Unsynced,
) -> None:
    assert stamped_outside_the_window(unsynced.sim, unsynced.rest)  # the premise: -1021 now
    stream = unsynced.stream()  # wired as live_start does: the REST client's timestamp_ms
    task = asyncio.create_task(stream.run())
    try:
        live = await next_live(unsynced.queue)
        assert live.after == "start" and stream.subscription_id is not None
        assert not stamped_outside_the_window(unsynced.sim, unsynced.rest)
        # events flow on the subscription: a market buy's fills arrive as the REST answer says
        body = await unsynced.rest.post(
            "/api/v3/order",
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.5",
             "newClientOrderId": "resync-buy-1", "newOrderRespType": "FULL"},
            signed=True, order=True,
        )  # fmt: skip
        fold = UserEventFold()
        filled = Decimal(0)
        while filled < Decimal(body["executedQty"]):
            item = await asyncio.wait_for(unsynced.queue.get(), WAIT_S)
            if isinstance(item, UserStreamGap | UserStreamLive):
                continue
            for event in fold.apply(item):
                if isinstance(event, OrderFilled) and event.client_order_id == "resync-buy-1":
                    filled += event.quantity
        assert filled == Decimal(body["executedQty"]) > 0
    finally:
        await stream.close()
        await asyncio.wait_for(task, WAIT_S)


async def test_an_explicit_sync_time_is_used_for_the_resync(unsynced: Unsynced) -> None:
    resyncs: list[int] = []

    async def sync_time() -> int:
        resyncs.append(await unsynced.rest.sync_time())
        return resyncs[-1]

    # a plain callable: nothing to infer a resync from, only the one passed
    stream = unsynced.stream(timestamp_ms=lambda: unsynced.rest.timestamp_ms(), sync_time=sync_time)
    task = asyncio.create_task(stream.run())
    try:
        await next_live(unsynced.queue)
        assert len(resyncs) == 1 and stream.subscription_id is not None
    finally:
        await stream.close()
        await asyncio.wait_for(task, WAIT_S)
