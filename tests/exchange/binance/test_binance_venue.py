"""BinanceVenue against the loopback simulator: order queues, reconciliation, account, dead-man switch.

Orders are placed through the venue's synchronous facade (as the trading loop does) and checked
against the simulator's own records; changes made "by hand" on the exchange are signed here,
independently of the engine's signing code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from engine.clock import LiveClock
from engine.commands import point_at
from engine.config import Config, parse_config
from engine.journal import Journal
from engine.live_start import BinanceSession, build_session, start_session
from engine.model import Market, Side
from engine.orders import OrderCanceled, OrderEvent, OrderIntent, OrderRole, OrderType
from exchange.binance.auth import BinanceKeys
from exchange.sim.server import SimServer
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET

pytestmark = pytest.mark.flaky(reruns=2)  # real sockets on a loaded 2-core machine
D = Decimal


@dataclass
class Rig:
    sim: SimServer
    session: BinanceSession
    journal: Journal
    events: list[OrderEvent]
    config: Config

    async def wait_for(self, predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.01)

    async def signed(self, method: str, path: str, params: dict) -> tuple[int, object]:
        query = urlencode({**params, "timestamp": self.sim.server_time_ms()})
        signature = hmac.new(TEST_API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        async with aiohttp.ClientSession() as http, http.request(
            method, f"{self.sim.base_http}{path}?{query}&signature={signature}",
            headers={"X-MBX-APIKEY": TEST_API_KEY},
        ) as resp:
            return resp.status, await resp.json()


async def _rig(  # type: ignore[no-untyped-def]
    tape: Path, market: Market, tmp_path: Path, *, stream: bool, execution: dict | None = None,
    venue_overrides: dict | None = None, risk: dict | None = None, prepare=None,
) -> AsyncIterator[Rig]:
    clock = LiveClock()
    async with SimServer([tape], speed=0, autostart=False, trading=True) as sim, aiohttp.ClientSession() as http:
        sim.start()
        await asyncio.sleep(0.3)  # a book to trade against
        sim.pause()
        raw = {"mode": "testnet", "logging": {"console": "off", "file": None},
               "execution": {"reconcile_interval_s": 0, **(execution or {})}, "risk": risk or {}}  # fmt: skip
        config = point_at(parse_config(raw), sim.base_http, sim.base_ws, market, ["BTCUSDT"])
        journal = Journal.open(tmp_path / "journal.sqlite")
        session = build_session(config, clock, http, journal, BinanceKeys.hmac(TEST_API_KEY, TEST_API_SECRET))
        events: list[OrderEvent] = []
        session.venue.set_listener(events.extend)
        session.venue.config = dataclasses.replace(session.venue.config, **(venue_overrides or {}))
        rig = Rig(sim, session, journal, events, config)
        if prepare is not None:
            await prepare(rig)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(session.venue.run())]
            if stream:
                tasks.append(tg.create_task(session.stream.run()))
                await start_session(session, config, journal, clock)
            else:
                await session.rest.sync_time()
            yield rig
            for task in tasks:
                task.cancel()
        journal.close()


@pytest.fixture
async def spot(tapes: dict[str, Path], tmp_path: Path) -> AsyncIterator[Rig]:
    async for rig in _rig(tapes["spot_btcusdt"], Market.SPOT, tmp_path, stream=False):
        yield rig


def _limit_far_below(rig: Rig, cid: str) -> OrderIntent:
    bids, _ = rig.sim.book_levels("BTCUSDT", depth=1)
    price = (D(str(bids[0][0])) * D("0.9")).quantize(D("0.01"))
    return OrderIntent(client_order_id=cid, symbol="BTCUSDT", side=Side.BUY, type=OrderType.LIMIT,
                       quantity=D("0.001"), price=price, role=OrderRole.ENTRY)  # fmt: skip


def _submit(rig: Rig, intent: OrderIntent) -> None:
    rig.journal.record_intent(intent, 0)  # the trading loop journals before the venue hears of it
    rig.session.venue.submit(intent, 0)


async def test_commands_of_one_symbol_are_sent_in_order(spot: Rig) -> None:
    intent = _limit_far_below(spot, "tl-BTCUSDT-1-en")
    _submit(spot, intent)
    # queued, not sent yet: it already counts as open (a halt must be able to cancel it)
    assert [(o.client_order_id, o.status.value) for o in spot.session.venue.open_orders()] == [
        (intent.client_order_id, "PENDING")]
    spot.session.venue.cancel("BTCUSDT", intent.client_order_id, 0)  # queued behind its placement
    assert await spot.session.venue.drain()
    kinds = [type(e).__name__ for e in spot.events]
    assert kinds == ["OrderAccepted", "OrderCanceled"]
    records = [o for o in spot.sim.trading.spot.orders.values() if o.client_order_id == intent.client_order_id]  # type: ignore[union-attr]
    assert [r.status for r in records] == ["CANCELED"]


async def test_an_order_on_an_idle_symbol_leaves_before_submit_returns(spot: Rig) -> None:
    wire = spot.session.rest.wire
    assert wire is not None  # execution.order_connections defaults to 4
    await spot.wait_for(lambda: wire.ready >= 1)
    first, second = _limit_far_below(spot, "tl-BTCUSDT-11-en"), _limit_far_below(spot, "tl-BTCUSDT-12-en")
    _submit(spot, first)
    assert wire.sent == 1  # written on the warm connection inside submit: no await since
    _submit(spot, second)  # the symbol's worker has one in flight: queued behind it, in order
    spot.session.venue.cancel("BTCUSDT", first.client_order_id, 0)
    assert wire.sent == 1
    assert await spot.session.venue.drain()
    assert [(type(e).__name__, e.client_order_id) for e in spot.events] == [
        ("OrderAccepted", first.client_order_id), ("OrderAccepted", second.client_order_id),
        ("OrderCanceled", first.client_order_id)]
    desk = spot.sim.trading.spot  # type: ignore[union-attr]
    placed = [(o.client_order_id, o.status) for o in desk.orders.values()
              if o.client_order_id in (first.client_order_id, second.client_order_id)]  # fmt: skip
    assert sorted(placed) == [(first.client_order_id, "CANCELED"), (second.client_order_id, "NEW")]


async def test_periodic_reconciliation_finds_an_order_cancelled_unseen_and_foreign_orders(spot: Rig) -> None:
    intent = _limit_far_below(spot, "tl-BTCUSDT-2-en")
    _submit(spot, intent)
    assert await spot.session.venue.drain()
    assert [o.client_order_id for o in spot.session.venue.open_orders()] == [intent.client_order_id]
    # no user stream in this rig: a cancel made on the website reaches the engine only by REST
    status, body = await spot.signed("DELETE", "/api/v3/order",
                                      {"symbol": "BTCUSDT", "origClientOrderId": intent.client_order_id})  # fmt: skip
    assert status == 200, body
    foreign = _limit_far_below(spot, "manual-order-1")
    status, body = await spot.signed("POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.001", "price": str(foreign.price), "newClientOrderId": "manual-order-1"})  # fmt: skip
    assert status == 200, body
    assert spot.session.venue.open_order_count() == 1  # still believed open
    found = await spot.session.venue.reconcile_open_orders()
    assert found == ["manual-order-1"]
    assert any(isinstance(e, OrderCanceled) and e.client_order_id == intent.client_order_id for e in spot.events)
    assert spot.session.venue.open_order_count() == 0


async def test_stale_entries_are_cancelled_by_the_venue(tapes: dict[str, Path], tmp_path: Path) -> None:
    async for rig in _rig(tapes["spot_btcusdt"], Market.SPOT, tmp_path, stream=False,
                          execution={"max_entry_age_s": 0.2}, venue_overrides={"stale_check_s": 0.05}):
        intent = _limit_far_below(rig, "tl-BTCUSDT-3-en")
        _submit(rig, intent)
        await rig.wait_for(lambda: any(isinstance(e, OrderCanceled) for e in rig.events))
        records = [o for o in rig.sim.trading.spot.orders.values() if o.client_order_id == intent.client_order_id]  # type: ignore[union-attr]
        assert [r.status for r in records] == ["CANCELED"]


async def test_usdm_start_sets_one_way_mode_leverage_and_margin_and_arms_the_countdown(
    tapes: dict[str, Path], tmp_path: Path
) -> None:
    async def hedge_mode(rig: Rig) -> None:  # as a user may have left the account
        status, body = await rig.signed("POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": "true"})
        assert status == 200, body

    async for rig in _rig(tapes["usdm_btcusdt"], Market.USDM, tmp_path, stream=True, risk={"leverage": 3},
                          venue_overrides={"countdown_ms": 60_000, "countdown_refresh_s": 0.05},
                          prepare=hedge_mode):
        routes = rig.sim.trading.futures_routes  # type: ignore[union-attr]
        status, body = await rig.signed("GET", "/fapi/v1/positionSide/dual", {})
        assert (status, body) == (200, {"dualSidePosition": False})
        assert routes.leverages == {"BTCUSDT": 3}
        assert routes.margin_types == {"BTCUSDT": "ISOLATED"}
        await rig.wait_for(lambda: "BTCUSDT" in routes.countdowns)
        assert rig.session.venue.stream_live
        balances = rig.session.venue.balances()
        assert balances["USDT"].total == rig.sim.trading.futures.venue.balances()["USDT"].total  # type: ignore[union-attr]
        # a position with its stop: the switch is disarmed (the stop must not depend on it)
        entry = OrderIntent(client_order_id="tl-BTCUSDT-5-en", symbol="BTCUSDT", side=Side.BUY,
                            type=OrderType.MARKET, quantity=D("0.010"), role=OrderRole.ENTRY)  # fmt: skip
        _submit(rig, entry)
        assert await rig.session.venue.drain()
        bids, _ = rig.sim.book_levels("BTCUSDT", depth=1)
        stop = OrderIntent(client_order_id="tl-BTCUSDT-5-sl1", symbol="BTCUSDT", side=Side.SELL,
                           type=OrderType.STOP_MARKET, quantity=D("0.010"), reduce_only=True,
                           stop_price=(D(str(bids[0][0])) * D("0.95")).quantize(D("0.1")),
                           role=OrderRole.STOP_LOSS)  # fmt: skip
        _submit(rig, stop)
        assert await rig.session.venue.drain()
        await rig.wait_for(lambda: "BTCUSDT" not in routes.countdowns)
        assert [a.client_algo_id for a in rig.sim.trading.futures.open_algos("BTCUSDT")] == [stop.client_order_id]  # type: ignore[union-attr]
        await rig.session.venue.close()  # a clean stop disarms the dead-man switch
        assert "BTCUSDT" not in routes.countdowns


async def test_a_lost_answer_after_the_stream_reported_the_order_changes_nothing(
    tapes: dict[str, Path], tmp_path: Path
) -> None:
    """The user stream says NEW, then the placement's answer times out: the order stays NEW."""
    async for rig in _rig(tapes["spot_btcusdt"], Market.SPOT, tmp_path, stream=True):
        rig.session.rest._timeout_s = 1.0  # below the answer the simulator holds back
        rig.sim.trading.faults.order_timeout(seconds=3.0)  # type: ignore[union-attr]
        intent = _limit_far_below(rig, "tl-BTCUSDT-6-en")
        _submit(rig, intent)
        assert await rig.session.venue.drain(timeout_s=10)
        assert rig.session.venue.manager.status(intent.client_order_id).value == "NEW"  # type: ignore[union-attr]
        record = rig.journal.intent(intent.client_order_id)
        assert record is not None and record.status.value == "PENDING"  # never marked UNKNOWN
        assert [type(e).__name__ for e in rig.events] == ["OrderAccepted"]
