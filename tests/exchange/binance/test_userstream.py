"""User-data stream clients against the loopback simulator with trading on (real sockets).

Orders go over signed REST (BinanceRest with the simulator's fixture keys); their fills come back
through the stream clients and are folded into engine events, which must match the REST answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
import pytest
from sim_pause import pause_after_diffs
from structlog.testing import capture_logs

from engine.clock import LiveClock
from engine.model import Market, Side
from engine.orders import OrderAccepted, OrderFilled
from exchange.binance.auth import BinanceKeys
from exchange.binance.rest import BinanceRest
from exchange.binance.urls import BinanceEndpoints
from exchange.binance.user_events import (
    BalanceSnapshot,
    PositionSnapshot,
    UserEventFold,
)
from exchange.binance.userstream import (
    LISTEN_KEY_PATH,
    FuturesUserStream,
    SpotUserStream,
    UserStreamGap,
    UserStreamItem,
    UserStreamLive,
)
from exchange.errors import AuthFailed
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET

WAIT_S = 10.0




@dataclass
class Venue:
    sim: SimServer
    http: aiohttp.ClientSession
    rest: BinanceRest
    endpoints: BinanceEndpoints
    queue: asyncio.Queue[UserStreamItem]

    async def next_of(self, kind: type, within: list[UserStreamItem] | None = None) -> object:
        """Return the next queued item of a type, keeping the skipped ones in `within`."""
        while True:
            item = await asyncio.wait_for(self.queue.get(), WAIT_S)
            if isinstance(item, kind):
                return item
            if within is not None:
                within.append(item)

    async def collect_until(self, done) -> list[UserStreamItem]:  # type: ignore[no-untyped-def]
        seen: list[UserStreamItem] = []
        while not done(seen):
            seen.append(await asyncio.wait_for(self.queue.get(), WAIT_S))
        return seen


async def venue(timeline: Timeline, market: Market, secret: str) -> AsyncIterator[Venue]:
    async with (
        SimServer(timeline, speed=0, autostart=False, trading=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        await pause_after_diffs(sim, 50)
        endpoints = BinanceEndpoints(sim.base_http, sim.base_ws, routed=True)
        keys = BinanceKeys.hmac(TEST_API_KEY, secret)
        rest = BinanceRest(market, endpoints, LiveClock(), http, keys)
        await rest.sync_time()
        yield Venue(sim, http, rest, endpoints, asyncio.Queue())


@pytest.fixture
async def usdm(usdm_timeline: Timeline) -> AsyncIterator[Venue]:
    async for v in venue(usdm_timeline, Market.USDM, TEST_API_SECRET):
        yield v


@pytest.fixture
async def spot(spot_timeline: Timeline) -> AsyncIterator[Venue]:
    async for v in venue(spot_timeline, Market.SPOT, TEST_API_SECRET):
        yield v


@pytest.fixture
async def spot_wrong_secret(spot_timeline: Timeline) -> AsyncIterator[Venue]:
    async for v in venue(spot_timeline, Market.SPOT, "wrong".ljust(64, "x")):
        yield v


async def running(stream: FuturesUserStream | SpotUserStream) -> asyncio.Task[None]:
    return asyncio.create_task(stream.run())


async def stop(stream: FuturesUserStream | SpotUserStream, task: asyncio.Task[None]) -> None:
    await stream.close()
    await asyncio.wait_for(task, WAIT_S)


def fills_of(items: list[UserStreamItem], fold: UserEventFold) -> list[object]:
    out: list[object] = []
    for item in items:
        if not isinstance(item, (UserStreamGap, UserStreamLive)):
            out.extend(fold.apply(item))
    return out


async def futures_market_buy(v: Venue, client_id: str, qty: str) -> dict:
    return await v.rest.post(
        "/fapi/v1/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": qty,
         "newClientOrderId": client_id, "newOrderRespType": "RESULT"},
        signed=True, order=True,
    )  # fmt: skip


async def futures_fill_events(v: Venue, fold: UserEventFold, client_id: str) -> list[object]:
    """Fold queued items until the order is complete and the position snapshot arrived."""

    def complete(seen: list[UserStreamItem]) -> bool:
        out = fills_of(seen, UserEventFold())
        done = any(isinstance(e, OrderFilled) and e.order_complete for e in out)
        return done and any(isinstance(e, PositionSnapshot) for e in out)

    return fills_of(await v.collect_until(complete), fold)


async def test_futures_fills_arrive_folded_and_match_rest(usdm: Venue) -> None:
    stream = FuturesUserStream(usdm.rest, usdm.endpoints, usdm.queue, LiveClock(), usdm.http)
    task = await running(stream)
    live = await usdm.next_of(UserStreamLive)
    assert live.after == "start"  # type: ignore[attr-defined]
    body = await futures_market_buy(usdm, "uds-buy-1", "0.01")
    assert body["status"] == "FILLED"
    out = await futures_fill_events(usdm, UserEventFold(), "uds-buy-1")
    accepted = [e for e in out if isinstance(e, OrderAccepted)]
    fills = [e for e in out if isinstance(e, OrderFilled)]
    assert accepted == [OrderAccepted("BTCUSDT", "uds-buy-1", str(body["orderId"]),
                                      accepted[0].ts_event_ms)]  # fmt: skip
    assert sum(f.quantity for f in fills) == Decimal(body["executedQty"]) == Decimal("0.01")
    assert sum(f.price * f.quantity for f in fills) / Decimal("0.01") == Decimal(body["avgPrice"])
    assert all(f.side is Side.BUY and f.client_order_id == "uds-buy-1" for f in fills)

    trades = await usdm.rest.get(
        "/fapi/v1/userTrades", {"symbol": "BTCUSDT"}, signed=True, weight=5
    )
    assert [(f.trade_id, f.price, f.quantity, f.fee, f.fee_asset) for f in fills] == [
        (int(t["id"]), Decimal(t["price"]), Decimal(t["qty"]), Decimal(t["commission"]),
         t["commissionAsset"]) for t in trades
    ]  # fmt: skip
    risk = await usdm.rest.get("/fapi/v3/positionRisk", {"symbol": "BTCUSDT"}, signed=True,
                               weight=5)  # fmt: skip
    position = [e for e in out if isinstance(e, PositionSnapshot)][-1]
    assert (position.amount, position.entry_price) == (
        Decimal(risk[0]["positionAmt"]),
        Decimal(risk[0]["entryPrice"]),
    )
    await stop(stream, task)


async def test_listen_key_expiry_takes_a_new_key_and_reports_the_gap(usdm: Venue) -> None:
    trading = usdm.sim.trading
    assert trading is not None
    stream = FuturesUserStream(usdm.rest, usdm.endpoints, usdm.queue, LiveClock(), usdm.http)
    with capture_logs() as logs:
        task = await running(stream)
        await usdm.next_of(UserStreamLive)
        first_key = next(iter(trading.streams.listen_keys))
        assert trading.faults.listen_key_expire() == 1
        gap = await usdm.next_of(UserStreamGap)
        assert gap.reason == "listen_key_expired"  # type: ignore[attr-defined]
        live = await usdm.next_of(UserStreamLive)
        assert live.after == "listen_key_expired"  # type: ignore[attr-defined]
        live_keys = [k for k, lk in trading.streams.listen_keys.items() if not lk.expired]
        assert len(live_keys) == 1 and live_keys[0] != first_key
        assert stream.stats.listen_keys_created == 2 and stream.stats.gaps == 1

        # Events now flow on the new key.
        body = await futures_market_buy(usdm, "after-expiry", "0.002")
        out = await futures_fill_events(usdm, UserEventFold(), "after-expiry")
        assert sum(e.quantity for e in out if isinstance(e, OrderFilled)) == Decimal(
            body["executedQty"]
        )
        await stop(stream, task)
    text = repr(logs)
    for secret in (first_key, live_keys[0], TEST_API_KEY, TEST_API_SECRET):
        assert secret not in text
    assert any(entry["event"] == "user_stream_connecting" for entry in logs)


async def test_deleted_key_is_noticed_by_the_keepalive_and_replaced(usdm: Venue) -> None:
    stream = FuturesUserStream(usdm.rest, usdm.endpoints, usdm.queue, LiveClock(), usdm.http,
                               keepalive_s=0.05)  # fmt: skip
    task = await running(stream)
    await usdm.next_of(UserStreamLive)
    trading = usdm.sim.trading
    assert trading is not None
    (key,) = trading.streams.listen_keys.values()
    created_expiry_ns = key.expires_ns
    while stream.stats.keepalives < 2:  # the PUTs extend the key on the server
        await asyncio.sleep(0.01)
    assert key.expires_ns > created_expiry_ns
    await usdm.rest.delete(LISTEN_KEY_PATH, keyed=True)  # the key is gone without any notice
    gap = await usdm.next_of(UserStreamGap)
    assert gap.reason == "listen_key_invalid"  # type: ignore[attr-defined]
    await usdm.next_of(UserStreamLive)
    assert stream.stats.listen_keys_created == 2
    await stop(stream, task)


async def test_futures_drop_reconnects_and_reports_the_gap(usdm: Venue) -> None:
    trading = usdm.sim.trading
    assert trading is not None
    stream = FuturesUserStream(usdm.rest, usdm.endpoints, usdm.queue, LiveClock(), usdm.http)
    task = await running(stream)
    await usdm.next_of(UserStreamLive)
    assert trading.faults.user_stream_drop() == 1
    gap = await usdm.next_of(UserStreamGap)
    assert gap.reason in ("disconnected", "connection_error")  # type: ignore[attr-defined]
    live = await usdm.next_of(UserStreamLive)
    assert live.after == gap.reason  # type: ignore[attr-defined]
    assert stream.stats.connects == 2 and stream.stats.listen_keys_created == 1
    body = await futures_market_buy(usdm, "after-drop", "0.003")
    out = await futures_fill_events(usdm, UserEventFold(), "after-drop")
    assert sum(e.quantity for e in out if isinstance(e, OrderFilled)) == Decimal(
        body["executedQty"]
    )
    await stop(stream, task)


def spot_stream(
    v: Venue, secret: str = TEST_API_SECRET, recv_window_ms: int | None = None
) -> SpotUserStream:
    keys = BinanceKeys.hmac(TEST_API_KEY, secret)
    url = f"{v.sim.base_ws}/ws-api/v3"
    clock = LiveClock()
    return SpotUserStream(
        url, keys, v.rest.timestamp_ms, v.queue, clock, v.http, recv_window_ms=recv_window_ms
    )


async def spot_market_buy(v: Venue, client_id: str, qty: str) -> dict:
    return await v.rest.post(
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": qty,
         "newClientOrderId": client_id, "newOrderRespType": "FULL"},
        signed=True, order=True,
    )  # fmt: skip


async def spot_events(v: Venue, fold: UserEventFold) -> list[object]:
    def complete(seen: list[UserStreamItem]) -> bool:
        out = fills_of(seen, UserEventFold())
        done = any(isinstance(e, OrderFilled) and e.order_complete for e in out)
        return done and any(isinstance(e, BalanceSnapshot) for e in out)

    return fills_of(await v.collect_until(complete), fold)


async def test_spot_subscription_delivers_fills_matching_the_rest_answer(spot: Venue) -> None:
    stream = spot_stream(spot)
    task = await running(stream)
    await spot.next_of(UserStreamLive)
    body = await spot_market_buy(spot, "spot-buy-1", "3.5")
    assert body["status"] == "FILLED" and len(body["fills"]) > 1
    out = await spot_events(spot, UserEventFold())
    fills = [e for e in out if isinstance(e, OrderFilled)]
    assert [(f.trade_id, f.price, f.quantity, f.fee, f.fee_asset) for f in fills] == [
        (int(x["tradeId"]), Decimal(x["price"]), Decimal(x["qty"]), Decimal(x["commission"]),
         x["commissionAsset"]) for x in body["fills"]
    ]  # fmt: skip
    assert [f.order_complete for f in fills] == [False] * (len(fills) - 1) + [True]
    assert [e for e in out if isinstance(e, OrderAccepted)] == [
        OrderAccepted("BTCUSDT", "spot-buy-1", str(body["orderId"]), body["transactTime"])
    ]

    account = await spot.rest.get("/api/v3/account", signed=True, weight=20)
    rest_balances = {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"]))
                     for b in account["balances"]}  # fmt: skip
    snapshots = {e.asset: (e.free, e.locked) for e in out if isinstance(e, BalanceSnapshot)}
    assert snapshots and all(rest_balances[a] == v for a, v in snapshots.items())
    assert {"BTC", "USDT"} <= snapshots.keys()
    await stop(stream, task)


async def test_spot_drop_resubscribes_and_reports_the_gap(spot: Venue) -> None:
    trading = spot.sim.trading
    assert trading is not None
    stream = spot_stream(spot, recv_window_ms=5000)  # sorted order != insertion order
    task = await running(stream)
    await spot.next_of(UserStreamLive)
    first_subscription = stream.subscription_id
    assert trading.faults.user_stream_drop() == 1
    gap = await spot.next_of(UserStreamGap)
    live = await spot.next_of(UserStreamLive)
    assert live.after == gap.reason  # type: ignore[attr-defined]
    assert stream.subscription_id is not None and stream.subscription_id != first_subscription
    body = await spot_market_buy(spot, "spot-after-drop", "0.5")
    out = await spot_events(spot, UserEventFold())
    assert sum(e.quantity for e in out if isinstance(e, OrderFilled)) == Decimal(
        body["executedQty"]
    )
    await stop(stream, task)


async def test_spot_subscription_with_a_wrong_secret_is_an_auth_error(
    spot_wrong_secret: Venue,
) -> None:
    stream = spot_stream(spot_wrong_secret, "wrong".ljust(64, "x"))
    with capture_logs() as logs, pytest.raises(AuthFailed) as caught:
        await asyncio.wait_for(stream.run(), WAIT_S)
    assert caught.value.code == -1022
    assert "Signature" in caught.value.message
    assert TEST_API_KEY not in repr(logs) and TEST_API_KEY not in repr(caught.value)


async def test_malformed_frames_are_counted_and_the_stream_goes_on(usdm: Venue) -> None:
    trading = usdm.sim.trading
    assert trading is not None
    stream = FuturesUserStream(usdm.rest, usdm.endpoints, usdm.queue, LiveClock(), usdm.http)
    task = await running(stream)
    await usdm.next_of(UserStreamLive)
    bad = [b"not json", b'{"e":"ORDER_TRADE_UPDATE","E":1,"o":{"s":"BTCUSDT"}}', b"[]"]
    with capture_logs() as logs:
        for frame in bad:
            for conn in list(trading.streams.conns):
                conn.send(frame)
        body = await futures_market_buy(usdm, "after-garbage", "0.001")
        out = await futures_fill_events(usdm, UserEventFold(), "after-garbage")
    assert sum(e.quantity for e in out if isinstance(e, OrderFilled)) == Decimal(
        body["executedQty"]
    )
    assert stream.stats.malformed == len(bad) and stream.stats.gaps == 0
    assert [e["event"] for e in logs].count("user_event_malformed") == len(bad)
    await stop(stream, task)


async def test_a_full_queue_is_reported_as_a_gap_before_the_next_item(usdm: Venue) -> None:
    queue: asyncio.Queue[UserStreamItem] = asyncio.Queue(maxsize=2)
    stream = FuturesUserStream(usdm.rest, usdm.endpoints, queue, LiveClock(), usdm.http)
    task = await running(stream)
    first = await asyncio.wait_for(queue.get(), WAIT_S)
    assert isinstance(first, UserStreamLive)
    await futures_market_buy(usdm, "overflow-1", "0.01")  # NEW, fills, ACCOUNT_UPDATE: > 2
    while stream.stats.dropped == 0:
        await asyncio.sleep(0.01)
    while not queue.empty():
        queue.get_nowait()
    await futures_market_buy(usdm, "overflow-2", "0.001")
    item = await asyncio.wait_for(queue.get(), WAIT_S)
    assert isinstance(item, UserStreamGap) and item.reason == "queue_full"
    await stop(stream, task)
