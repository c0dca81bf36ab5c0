"""One order contract, two venues: the simulated venue (paper, backtest) and the Binance venue
(testnet, live) over real sockets against the loopback simulator with trading on.

Every case runs against both venues (spot and USDⓈ-M where the case exists on that market), each
standing on the 2024-08-08 BTCUSDT tape paused after the same diff, so both see the same book and
the same last trade (contract_venues.py). Expected values come from that book and from the
exchangeInfo filters, parsed here; from Binance's regular fee tier (spot 0.10 % taker, USDⓈ-M
0.05 %); never from the venue under test.

Where the venues legitimately differ, each is held to the same reference instead of to the other:
- Fills of a market order: the simulated venue makes one fill per book level it walks; Binance
  makes one per maker order, so a level may be split. Both must fill the ordered quantity at book
  ask prices, best first, for the notional of the reference walk of the book.
- Fees: each fill's fee is its notional times the taker rate, to the 8 decimals Binance reports
  (the simulator charges spot fees in the quote asset; Binance charges a buy in the base asset
  unless BNB pays: both are accepted, balances are checked against the asset reported).
- Reject reasons: the simulated venue names its own reasons ("NOTIONAL"), the Binance venue the
  filter Binance named in "Filter failure: X" or implied by a USDⓈ-M code; the test compares
  the filter category only (lot size, price, notional), never the text.
- USDⓈ-M balances: the Binance venue reports the wallet as free (walletBalance, locked 0); the
  simulated venue splits it into free and margin locked. Only the total (the wallet) is compared.
- The Binance venue's submit/cancel return nothing: its events arrive through its listener and
  the driver waits until the venue has caught up with the exchange's records before reading them.
USDⓈ-M BTCUSDT cannot violate MIN_NOTIONAL alone: minQty 0.001 at the lowest price inside the
PERCENT_PRICE band is still above 5 USDT, so that case is spot only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from functools import cache
from pathlib import Path

import aiohttp
import pytest
from contract_venues import (
    SYMBOL,
    BinanceDriver,
    Levels,
    SimulatedDriver,
    TapeState,
    paused_sim,
    read_tape_state,
)
from structlog.testing import capture_logs

from engine.model import Market, Side
from engine.orders import (
    Liquidity,
    OrderAccepted,
    OrderEvent,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderRole,
    OrderStatus,
    OrderType,
)
from exchange.base import Balance
from exchange.sim.timeline import Timeline, load_timeline

BOTH_MARKETS = pytest.mark.parametrize("market", [Market.SPOT, Market.USDM], ids=["spot", "usdm"])
SPOT_ONLY = pytest.mark.parametrize("market", [Market.SPOT], ids=["spot"])
USDM_ONLY = pytest.mark.parametrize("market", [Market.USDM], ids=["usdm"])

TAKER_RATE = {Market.SPOT: Decimal("0.001"), Market.USDM: Decimal("0.0005")}
FEE_QUANTUM = Decimal("0.00000001")
FAR = Decimal(1000)  # USDT from the touch: far enough never to fill, inside PERCENT_PRICE bands
# Market orders large enough to walk several levels of the paused book (seen in the tests)
WALKING_QTY = {Market.SPOT: Decimal("5.3"), Market.USDM: Decimal("4.4")}
SMALL_QTY = {Market.SPOT: Decimal("0.01"), Market.USDM: Decimal("0.01")}
QUOTE, BASE = "USDT", "BTC"

Driver = SimulatedDriver | BinanceDriver


# -- independent references ------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The exchangeInfo filters an order can violate, read straight from the entry."""

    tick: Decimal
    min_price: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal

    @classmethod
    def of(cls, entry: dict) -> Filters:
        by_type = {f["filterType"]: f for f in entry["filters"]}
        price, lot = by_type["PRICE_FILTER"], by_type["LOT_SIZE"]
        notional = by_type.get("NOTIONAL") or by_type["MIN_NOTIONAL"]
        return cls(
            Decimal(price["tickSize"]), Decimal(price["minPrice"]), Decimal(lot["stepSize"]),
            Decimal(lot["minQty"]), Decimal(lot["maxQty"]),
            Decimal(notional.get("minNotional") or notional["notional"]),
        )  # fmt: skip

    def violations(self, price: Decimal, qty: Decimal) -> set[str]:
        """Return the filter categories a limit order at price for qty violates."""
        found = set()
        if price < self.min_price or price % self.tick:
            found.add("price")
        if qty % self.step or not self.min_qty <= qty <= self.max_qty:
            found.add("lot")
        if price * qty < self.min_notional:
            found.add("notional")
        return found


# What each venue may call a filter failure, by category.
REASON_CATEGORY = {
    "LOT_SIZE": "lot", "MARKET_LOT_SIZE": "lot",
    "PRICE_FILTER": "price",
    "NOTIONAL": "notional", "MIN_NOTIONAL": "notional",
}  # fmt: skip


def walk(asks: Levels, qty: Decimal) -> list[tuple[Decimal, Decimal]]:
    """Return the (price, qty) a market buy of qty takes from asks, best level first."""
    taken = []
    left = qty
    for price, available in asks:
        take = min(left, available)
        taken.append((price, take))
        left -= take
        if left == 0:
            return taken
    raise AssertionError(f"the book cannot fill {qty}")


def notional(fills: list[tuple[Decimal, Decimal]]) -> Decimal:
    return sum((p * q for p, q in fills), Decimal(0))


def total(balances: dict[str, Balance], asset: str) -> Decimal:
    balance = balances.get(asset)
    return balance.total if balance is not None else Decimal(0)


def held(balances: dict[str, Balance]) -> dict[str, tuple[Decimal, Decimal]]:
    """Return (free, locked) of every asset held (venues differ in listing empty assets)."""
    return {a: (b.free, b.locked) for a, b in balances.items() if b.total}


def on_tick(value: Decimal, grid: Decimal) -> Decimal:
    """Return value rounded down onto the grid (a tick or a step)."""
    return (value / grid).to_integral_value(ROUND_FLOOR) * grid


def intent(cid: str, side: Side, kind: OrderType, qty: Decimal, **extra: object) -> OrderIntent:
    return OrderIntent(cid, SYMBOL, side, kind, qty, **extra)  # type: ignore[arg-type]


def far_bid(state: TapeState, filters: Filters) -> Decimal:
    return on_tick(state.best()[0] - FAR, filters.tick)


def kinds(events: list[OrderEvent]) -> list[tuple[str, str]]:
    return [(type(e).__name__, getattr(e, "client_order_id", "")) for e in events]


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timeline_of(tapes: dict[str, Path]) -> Callable[[Market], Timeline]:
    names = {Market.SPOT: "spot_btcusdt", Market.USDM: "usdm_btcusdt"}
    return cache(lambda market: load_timeline([tapes[names[market]]]))


@pytest.fixture(params=["simulated", "binance"])
def venue_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@dataclass
class Rig:
    state: TapeState
    filters: Filters
    venue: Driver


@pytest.fixture
async def rig(
    venue_kind: str, market: Market, timeline_of: Callable[[Market], Timeline], tmp_path: Path
) -> AsyncIterator[Rig]:
    binance = venue_kind == "binance"
    async with (
        paused_sim(timeline_of(market), trading=binance) as sim,
        aiohttp.ClientSession() as http,
    ):
        state = await read_tape_state(sim, market, http)
        filters = Filters.of(state.entry)
        if not binance:
            yield Rig(state, filters, SimulatedDriver(state))
            return
        async with BinanceDriver.running(sim, market, http, tmp_path / "journal.sqlite") as venue:
            yield Rig(state, filters, venue)


# -- market orders -----------------------------------------------------------------------------


@BOTH_MARKETS
async def test_market_buy_fills_completely(rig: Rig, market: Market) -> None:
    qty = WALKING_QTY[market]
    reference = walk(rig.state.asks, qty)
    assert len(reference) > 2  # the order walks several levels
    events = await rig.venue.place(intent("c-mkt-1", Side.BUY, OrderType.MARKET, qty))

    assert isinstance(events[0], OrderAccepted) and events[0].client_order_id == "c-mkt-1"
    fills = [f for f in events[1:] if isinstance(f, OrderFilled)]
    assert fills and len(fills) == len(events) - 1, kinds(events)
    assert all(f.client_order_id == "c-mkt-1" and f.side is Side.BUY for f in fills)
    assert [f.order_complete for f in fills] == [False] * (len(fills) - 1) + [True]
    assert sum(f.quantity for f in fills) == qty
    assert len({f.trade_id for f in fills}) == len(fills)
    # at book prices, best first, for the reference walk's notional
    walked_prices = {p for p, _ in reference}
    assert all(f.price in walked_prices for f in fills)
    assert [f.price for f in fills] == sorted(f.price for f in fills)
    assert notional([(f.price, f.quantity) for f in fills]) == notional(reference)
    for f in fills:
        assert f.liquidity is Liquidity.TAKER
        charged_on = f.price * f.quantity if f.fee_asset == QUOTE else f.quantity
        assert f.fee_asset in (QUOTE, BASE) and f.fee > 0
        assert abs(f.fee - charged_on * TAKER_RATE[market]) <= FEE_QUANTUM
    assert rig.venue.open_orders() == []


@SPOT_ONLY
async def test_spot_market_buy_moves_balances_by_notional_and_fee(rig: Rig) -> None:
    qty = WALKING_QTY[Market.SPOT]
    reference_cost = notional(walk(rig.state.asks, qty))
    before = rig.venue.balances()
    events = await rig.venue.place(intent("c-mkt-2", Side.BUY, OrderType.MARKET, qty))
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert fills and fills[-1].order_complete
    quote_fee = sum((f.fee for f in fills if f.fee_asset == QUOTE), Decimal(0))
    base_fee = sum((f.fee for f in fills if f.fee_asset == BASE), Decimal(0))
    rate, rounding = TAKER_RATE[Market.SPOT], len(fills) * FEE_QUANTUM
    if base_fee == 0:  # the simulator's way: every fee in the quote asset
        assert abs(quote_fee - reference_cost * rate) <= rounding
    else:  # Binance's own way for a buy without BNB: every fee in the bought asset
        assert quote_fee == 0 and abs(base_fee - qty * rate) <= rounding

    after = rig.venue.balances()
    assert total(after, BASE) - total(before, BASE) == qty - base_fee
    assert total(after, QUOTE) - total(before, QUOTE) == -(reference_cost + quote_fee)
    assert after[QUOTE].locked == before[QUOTE].locked  # a market order holds nothing back
    assert total(after, "ETH") == total(before, "ETH")
    assert rig.venue.positions() == {}  # spot has balances, not positions


@USDM_ONLY
async def test_usdm_market_buy_opens_position_at_the_walk_price(rig: Rig) -> None:
    qty = WALKING_QTY[Market.USDM]
    reference = walk(rig.state.asks, qty)
    entry = notional(reference) / qty
    wallet_before = total(rig.venue.balances(), QUOTE)
    assert rig.venue.positions() == {}
    events = await rig.venue.place(intent("c-mkt-3", Side.BUY, OrderType.MARKET, qty))
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert fills and fills[-1].order_complete and all(f.fee_asset == QUOTE for f in fills)

    position = rig.venue.positions()[SYMBOL]
    assert position.qty == qty
    assert abs(position.entry_price - entry) <= FEE_QUANTUM
    fees = sum((f.fee for f in fills), Decimal(0))
    assert abs(fees - notional(reference) * TAKER_RATE[Market.USDM]) <= len(fills) * FEE_QUANTUM
    assert total(rig.venue.balances(), QUOTE) == wallet_before - fees  # wallet pays the fees


# -- resting orders and cancels ----------------------------------------------------------------


@BOTH_MARKETS
async def test_far_limit_rests_then_cancel_ends_it(rig: Rig, market: Market) -> None:
    price, qty = far_bid(rig.state, rig.filters), SMALL_QTY[market]
    assert rig.filters.violations(price, qty) == set()
    before = rig.venue.balances()
    events = await rig.venue.place(intent("c-lim-1", Side.BUY, OrderType.LIMIT, qty, price=price))
    assert kinds(events) == [("OrderAccepted", "c-lim-1")]

    assert rig.venue.open_order_count() == 1
    (resting,) = rig.venue.open_orders()
    assert (resting.client_order_id, resting.side, resting.quantity, resting.filled_quantity,
            resting.status) == ("c-lim-1", Side.BUY, qty, 0, OrderStatus.NEW)  # fmt: skip

    events = await rig.venue.cancel(SYMBOL, "c-lim-1")
    assert kinds(events) == [("OrderCanceled", "c-lim-1")]
    assert rig.venue.open_orders() == []
    assert held(rig.venue.balances()) == held(before)  # the order's lock is released


@BOTH_MARKETS
async def test_cancel_of_unknown_or_closed_order_is_quiet(rig: Rig, market: Market) -> None:
    price, qty = far_bid(rig.state, rig.filters), SMALL_QTY[market]
    await rig.venue.place(intent("c-rest", Side.BUY, OrderType.LIMIT, qty, price=price))
    done = await rig.venue.place(intent("c-done", Side.BUY, OrderType.MARKET, qty))
    assert isinstance(done[-1], OrderFilled) and done[-1].order_complete

    refused = await rig.venue.place(_violating(rig.state, rig.filters, market, "lot"))
    assert kinds(refused) == [("OrderRejected", "c-bad-lot")]

    with capture_logs() as logs:
        for closed in ("c-never-sent", "c-done", "c-bad-lot"):
            assert await rig.venue.cancel(SYMBOL, closed) == [], closed
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []  # not a failure
    (resting,) = rig.venue.open_orders()
    assert (resting.client_order_id, resting.status) == ("c-rest", OrderStatus.NEW)
    assert kinds(await rig.venue.cancel(SYMBOL, "c-rest")) == [("OrderCanceled", "c-rest")]
    assert await rig.venue.cancel(SYMBOL, "c-rest") == []  # cancelled twice: quiet too
    assert rig.venue.open_order_count() == 0


# -- filter violations -------------------------------------------------------------------------


def _violating(state: TapeState, filters: Filters, market: Market, broken: str) -> OrderIntent:
    price, qty = far_bid(state, filters), SMALL_QTY[market]
    if broken == "price":
        price += filters.tick / 2
    elif broken == "lot":
        qty += filters.step / 2
    else:  # the largest quantity on the step grid whose notional is still too small
        qty = on_tick(filters.min_notional / price, filters.step)
        if qty * price == filters.min_notional:
            qty -= filters.step
    assert filters.violations(price, qty) == {broken}, "the order must break exactly one filter"
    return intent(f"c-bad-{broken}", Side.BUY, OrderType.LIMIT, qty, price=price)


@pytest.mark.parametrize(
    ("market", "broken"),
    [(Market.SPOT, "lot"), (Market.SPOT, "price"), (Market.SPOT, "notional"),
     (Market.USDM, "lot"), (Market.USDM, "price")],
    ids=["spot-lot", "spot-price", "spot-notional", "usdm-lot", "usdm-price"],
)  # fmt: skip
async def test_filter_violation_is_rejected_with_its_reason(
    rig: Rig, market: Market, broken: str
) -> None:
    order = _violating(rig.state, rig.filters, market, broken)
    before = rig.venue.balances()
    events = await rig.venue.place(order)
    assert kinds(events) == [("OrderRejected", order.client_order_id)]
    rejected = events[0]
    assert isinstance(rejected, OrderRejected) and rejected.message
    assert REASON_CATEGORY.get(rejected.reason) == broken, rejected
    assert rig.venue.open_orders() == []
    assert held(rig.venue.balances()) == held(before)


# -- protective orders -------------------------------------------------------------------------


@SPOT_ONLY
async def test_spot_oco_pairs_both_legs_and_one_cancel_ends_both(rig: Rig) -> None:
    bid, ask = rig.state.best()
    qty = SMALL_QTY[Market.SPOT]
    target = intent("c-oco-tp", Side.SELL, OrderType.LIMIT, qty, price=on_tick(ask + FAR, rig.filters.tick),
                    role=OrderRole.TAKE_PROFIT)  # fmt: skip
    stop = intent("c-oco-sl", Side.SELL, OrderType.STOP_MARKET, qty,
                  stop_price=on_tick(bid - FAR, rig.filters.tick), role=OrderRole.STOP_LOSS)  # fmt: skip
    before = rig.venue.balances()
    events = await rig.venue.place_list("c-oco", [target, stop])
    assert sorted(kinds(events)) == [("OrderAccepted", "c-oco-sl"), ("OrderAccepted", "c-oco-tp")]
    assert {o.client_order_id for o in rig.venue.open_orders()} == {"c-oco-tp", "c-oco-sl"}
    assert rig.venue.order_list_of("c-oco-tp") == ("c-oco", "c-oco-sl")
    assert rig.venue.order_list_of("c-oco-sl") == ("c-oco", "c-oco-tp")

    events = await rig.venue.cancel(SYMBOL, "c-oco-sl")
    assert sorted(kinds(events)) == [("OrderCanceled", "c-oco-sl"), ("OrderCanceled", "c-oco-tp")]
    assert rig.venue.open_orders() == []
    assert rig.venue.order_list_of("c-oco-tp") is None
    assert rig.venue.order_list_of("c-oco-sl") is None
    assert held(rig.venue.balances()) == held(before)  # the list's lock is released


@USDM_ONLY
async def test_usdm_reduce_only_stop_market_rests_and_cancels(rig: Rig) -> None:
    bid, _ = rig.state.best()
    qty = SMALL_QTY[Market.USDM]
    opened = await rig.venue.place(intent("c-entry", Side.BUY, OrderType.MARKET, qty))
    assert isinstance(opened[-1], OrderFilled) and opened[-1].order_complete
    stop = intent("c-stop", Side.SELL, OrderType.STOP_MARKET, qty, role=OrderRole.STOP_LOSS,
                  stop_price=on_tick(bid - FAR, rig.filters.tick), reduce_only=True)  # fmt: skip

    events = await rig.venue.place(stop)
    assert kinds(events) == [("OrderAccepted", "c-stop")]
    (resting,) = rig.venue.open_orders()
    assert (resting.client_order_id, resting.side, resting.quantity, resting.status) == (
        "c-stop", Side.SELL, qty, OrderStatus.NEW)  # fmt: skip

    events = await rig.venue.cancel(SYMBOL, "c-stop")
    assert kinds(events) == [("OrderCanceled", "c-stop")]
    assert rig.venue.open_orders() == []
    assert rig.venue.positions()[SYMBOL].qty == qty
